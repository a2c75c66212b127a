"""When publisher confirms are sent for persistent messages in durable queues.

A confirm means the broker has taken responsibility for the message: it is on disk, or it has
already been consumed and acknowledged (RabbitMQ's rule too). The gated store holds the
journal's writes so the two cases can be told apart from outside the broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from support.broker_process import BrokerProcess, broker_process
from support.polling import wait_for

from plugmq.client import connect

GATED_STORE = Path(__file__).parent / "plugins" / "gated_store.py"
PERSISTENT = {"delivery_mode": 2}


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate-closed"


@pytest.fixture
def gated_broker(tmp_path: Path, gate: Path) -> Iterator[BrokerProcess]:
    process = broker_process(
        tmp_path,
        "--no-autoload",
        "--load-module", "transport_tcp",
        "--load-module", str(GATED_STORE),
        "--gate-file", str(gate),
    ).start()  # fmt: skip
    yield process
    process.stop()


async def test_consumed_message_is_confirmed_before_it_is_written(
    gated_broker: BrokerProcess, gate: Path
) -> None:
    with trio.fail_after(30):
        async with connect(gated_broker.url) as conn, conn.channel() as setup:
            await setup.queue_declare("held", durable=True)
            await setup.queue_declare("consumed", durable=True)
            gate.touch()
            async with conn.channel() as held, conn.channel() as fast, conn.channel() as worker:
                await held.confirm_select()
                await held.publish("", "held", b"nobody reads me", PERSISTENT)
                # the writer now holds a batch with this enqueue and waits at the gate
                await trio.to_thread.run_sync(wait_for, gate.with_suffix(".waiting").exists)

                async with worker.consume("consumed") as deliveries:
                    await fast.confirm_select()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            fast.publish_confirmed, "", "consumed", b"read at once", PERSISTENT
                        )
                        delivery = await deliveries.__anext__()
                        assert delivery.body == b"read at once"
                        await worker.ack(delivery.delivery_tag)
                    # publish_confirmed returned: confirmed while no write could finish
                    assert gate.exists()

                with trio.move_on_after(0.5) as waited:
                    await held.wait_for_confirms()
                assert waited.cancelled_caught, "an unconsumed message was confirmed unwritten"
                gate.unlink()
                await held.wait_for_confirms()
