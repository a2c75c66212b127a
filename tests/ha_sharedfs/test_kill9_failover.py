"""kill -9 of the master under load, three brokers on one shared directory, pika clients.

Three confirmed publishers and one transactional acking consumer run in threads, each with
pika's failover list (one ConnectionParameters per member) and reconnecting through it after
every error. Each round kills the serving master with SIGKILL at a seeded random moment,
waits for a standby to take over (a higher epoch), checks that every publisher confirms again
(on the new master) and restarts the killed broker, which must come back as a standby. At the
end the queue is drained and the ledger checked: every confirmed message is there or was
acknowledged in a committed transaction, no committed ack comes back, and no master became
active before the previous one was killed.

``HA_SHAREDFS_ROUNDS=20`` runs the long version (the default run keeps CI-sized rounds).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from support.sharedfs import Clients, SharedFSGroup, check_ledger, drain, log_time

ROUNDS = int(os.environ.get("HA_SHAREDFS_ROUNDS", "5"))
SEED = 20261205


@pytest.mark.timeout(60 + 30 * ROUNDS)
def test_kill_9_of_the_master_loses_no_confirmed_message(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    group = SharedFSGroup(tmp_path, size=3, lease=2.0)
    master = group.start()
    epoch = 1
    clients = Clients(group.parameters(), "ha-orders").start(publishers=3)
    try:
        for round_number in range(ROUNDS):
            clients.wait_progress(each=20)
            time.sleep(rng.uniform(0.0, 0.5))  # a seeded random instant under load
            killed_at = time.time()
            master.kill()
            new_master, active = group.wait_master(after_epoch=epoch)
            assert new_master is not master, f"round {round_number}: the dead broker is master"
            assert log_time(active) >= killed_at - 0.01, "a second master was active too early"
            epoch = active["epoch"]
            clients.wait_progress(each=20)  # every publisher continued on the new master
            master.start(ready_event="broker_listening")
            master.wait_event(
                "ha_standby_waiting", holder_url=f"amqp://127.0.0.1:{new_master.port}/"
            )
            master = new_master
        clients.stop()
        left = drain(group.parameters(), "ha-orders")
        check_ledger(clients.ledger, left)
        ledger = clients.ledger
        print(  # the figures of a long run, for its report (pytest -s)
            f"\n{ROUNDS} takeovers: {len(ledger.confirmed)} confirmed, "
            f"{len(ledger.committed_acks)} acked in committed transactions, {len(left)} left, "
            f"{len(ledger.in_doubt_acks)} acks in doubt, {len(ledger.errors)} client reconnects"
        )
        used = {port for port, count in clients.ledger.confirmed_by_port.items() if count}
        assert len(used) >= min(3, ROUNDS + 1) - 1, f"confirms came from {used} only"
    finally:
        clients.stop()
        group.stop()
