"""Drive a client library's publisher and consumer through master kills (thread-based clients).

A test writes its application code as two functions, as it would without failover in mind
beyond the library's own recipe: ``publish(stop)`` publishes message ids ``m0 .. m{total-1}``
with confirms, recording each in the ledger (``publish`` when sent, ``confirm`` when
confirmed), and returns; ``consume(stop)`` consumes and acks until ``stop`` is set, recording
``deliver`` and ``ack``. :func:`run_through_kills` runs both in threads, kills the group's
master each time the confirmed count reaches a threshold, waits until everything confirmed
was delivered, and checks the ledger. An exception in either thread fails the test with it.

Kill moments are seeded (:func:`kill_points`, ``PLUGMQ_TEST_SEED``) so a failing run can be
replayed; failures name the seed and the kill points.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Sequence

from support.failover_group import FailoverGroup
from support.ledger import LedgerReport
from support.polling import wait_for

Worker = Callable[[threading.Event], None]

#: The seed of the kill moments; set PLUGMQ_TEST_SEED to replay a failing run.
SEED = int(os.environ.get("PLUGMQ_TEST_SEED", "20261205"))


def kill_points(total: int, kills: int, seed: int = SEED) -> list[int]:
    """``kills`` increasing confirmed counts in the middle of a run of ``total`` messages at
    which to kill the master, drawn from ``seed`` (the same seed gives the same points)."""
    rng = random.Random(seed)
    return sorted(rng.sample(range(total // 10, total * 8 // 10), kills))


def run_through_kills(
    group: FailoverGroup,
    publish: Worker,
    consume: Worker,
    total: int,
    kill_at: Sequence[int],
    timeout: float = 90.0,
    rejoin: bool = False,
) -> LedgerReport:
    """Run ``publish`` and ``consume`` while killing the master at each ``kill_at`` count
    (with ``rejoin``, the killed broker then restarts as a standby on its old port, so a
    group of three survives any number of kills); check the ledger and return its report."""
    ledger = group.ledger
    assert ledger is not None, "the group needs a ledger"
    stop = threading.Event()
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_guarded, args=(worker, stop, errors), daemon=True)
        for worker in (publish, consume)
    ]
    for thread in threads:
        thread.start()
    try:
        for threshold in kill_at:
            wait_for(lambda t=threshold: errors or ledger.confirmed_count >= t, timeout)
            _raise_first(errors)
            group.kill_master()
            if rejoin:
                group.restart_dead()
        wait_for(lambda: errors or ledger.confirmed_count >= total, timeout)
        _raise_first(errors)
        wait_for(lambda: errors or ledger.delivered_all_confirmed(), timeout)
        _raise_first(errors)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a client thread did not stop"
    _raise_first(errors)
    try:
        return ledger.check()
    except AssertionError as error:
        raise AssertionError(f"seed {SEED}, kills at {list(kill_at)}: {error}") from error


def _guarded(worker: Worker, stop: threading.Event, errors: list[BaseException]) -> None:
    try:
        worker(stop)
    except BaseException as error:  # handed to the test's thread, which raises it
        errors.append(error)


def _raise_first(errors: list[BaseException]) -> None:
    if errors:
        raise errors[0]
