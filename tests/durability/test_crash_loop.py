"""kill -9 at random moments under load: what was confirmed is never lost.

Each round runs confirmed publishers and a transactional consumer against a broker with the
Berkeley DB store, kills the broker with SIGKILL at a random instant, restarts it on the same
data directory and drains the round's queue. The data must satisfy, every round:

* every confirmed message is either drained or was acknowledged in a committed transaction
  (or in the one transaction whose commit was in flight when the broker died: its outcome is
  unknown to the client, so those messages may be gone or back);
* no message acknowledged in a committed transaction comes back;
* no message comes back twice;
* every message that comes back does so with ``redelivered=True``: after an unclean stop the
  broker cannot know which were delivered, so it flags all of them, as RabbitMQ does (issue 17
  item 12: a consumer de-duplicating on the flag must never see a false negative).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field

import pytest
import trio
from support.broker_process import BrokerProcess

from plugmq.client import AMQPClientError, connect

ROUNDS = 6
PUBLISHERS = 3
WINDOW = 50
PERSISTENT = {"delivery_mode": 2}


@dataclass
class Ledger:
    """What the clients know for sure about one round."""

    confirmed: set[bytes] = field(default_factory=set)
    committed_acks: set[bytes] = field(default_factory=set)
    in_doubt_acks: set[bytes] = field(default_factory=set)


async def publisher(url: str, queue: str, number: int, ledger: Ledger) -> None:
    async with connect(url) as connection, connection.channel() as channel:
        await channel.confirm_select()
        for batch in range(10_000):
            bodies = [f"p{number}-{batch}-{i}".encode() for i in range(WINDOW)]
            for body in bodies:
                await channel.publish("", queue, body, PERSISTENT)
            await channel.wait_for_confirms()
            ledger.confirmed.update(bodies)


async def consumer(url: str, queue: str, ledger: Ledger) -> None:
    async with connect(url) as connection, connection.channel() as channel:
        await channel.tx_select()
        while True:
            acked = []
            for _ in range(20):
                message = await channel.get(queue)
                if message is None:
                    break
                if random.random() < 0.7:  # leave some delivered but unacknowledged
                    await message.ack()
                    acked.append(message.body)
            ledger.in_doubt_acks = set(acked)
            await channel.tx_commit()
            ledger.in_doubt_acks = set()
            ledger.committed_acks.update(acked)
            await trio.sleep(0.01)


async def run_until_killed(broker: BrokerProcess, queue: str, ledger: Ledger) -> None:
    async with connect(broker.url) as connection, connection.channel() as channel:
        await channel.queue_declare(queue, durable=True)

    async def guarded(task, *args) -> None:
        # The broker is killed under the clients: what the ledger holds is what counts.
        with contextlib.suppress(AMQPClientError, OSError, trio.BrokenResourceError):
            await task(*args)

    async with trio.open_nursery() as nursery:
        for number in range(PUBLISHERS):
            nursery.start_soon(guarded, publisher, broker.url, queue, number, ledger)
        nursery.start_soon(guarded, consumer, broker.url, queue, ledger)
        await trio.sleep(random.uniform(0.3, 1.5))
        broker.kill()
        with trio.fail_after(15):
            await trio.sleep(0.2)
        nursery.cancel_scope.cancel()


async def drain(broker: BrokerProcess, queue: str) -> list[tuple[bytes, bool]]:
    drained = []
    async with connect(broker.url) as connection, connection.channel() as channel:
        while (message := await channel.get(queue, no_ack=True)) is not None:
            drained.append((message.body, message.redelivered))
    return drained


@pytest.mark.timeout(240)
async def test_kill_9_under_load_never_loses_confirmed_messages(
    durable_broker: BrokerProcess,
) -> None:
    random.seed(20261123)
    for round_number in range(ROUNDS):
        queue = f"crash-{round_number}"
        ledger = Ledger()
        await run_until_killed(durable_broker, queue, ledger)
        durable_broker.restart()
        drained = await drain(durable_broker, queue)
        bodies = [body for body, _ in drained]
        assert ledger.confirmed, "the round confirmed nothing: the load did not run"
        assert len(bodies) == len(set(bodies)), "a message came back twice"
        missing = ledger.confirmed - set(bodies) - ledger.committed_acks - ledger.in_doubt_acks
        assert not missing, f"round {round_number}: {len(missing)} confirmed messages lost"
        assert not ledger.committed_acks & set(bodies), "an acknowledged message came back"
        not_flagged = [body for body, redelivered in drained if not redelivered]
        assert not not_flagged, (
            f"round {round_number}: {len(not_flagged)} of {len(drained)} messages recovered "
            "after kill -9 without the redelivered flag"
        )
