"""In-broker client throughput: what a federation link can move inside one broker process.

Usage (from the repository root)::

    uv run python benchmarks/inbroker.py --count 100000

Runs a broker in this process (``--store memory`` and ``--store bdb`` in a temporary
directory) and times, for 100-byte messages:

* **publish**: ``client.publish`` of transient messages into a queue nobody consumes;
* **transfer**: an acked transfer of messages already in durable queue ``src`` to durable queue
  ``dst`` (consume with prefetch 2000 into a memory channel, publish a persistent copy with the
  raw header, ack the source in ``on_durable(True)``) until ``src`` is empty and nothing is
  unacknowledged: the push half of a federation route, minus the network.

Prints a markdown table; the numbers depend on the machine (run it next to the AMQP figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.in_process import running_broker

from plugmq.inbroker import Delivery, InBrokerClient, open_client
from plugmq.logging import configure_logging

BODY = bytes(100)
PREFETCH = 2000


async def publish_rate(client: InBrokerClient, count: int) -> float:
    client.declare_queue("bench.sink")
    started = time.perf_counter()
    for _ in range(count):
        client.publish("", "bench.sink", BODY)
    elapsed = time.perf_counter() - started
    client.delete_queue("bench.sink")
    return count / elapsed


async def transfer_rate(client: InBrokerClient, count: int) -> float:
    client.declare_queue("src", durable=True)
    client.declare_queue("dst", durable=True)
    for _ in range(count):
        client.publish("", "src", BODY, properties={"delivery_mode": 2})
    await client.flush()
    send, receive = trio.open_memory_channel[Delivery](PREFETCH)
    done = trio.Event()
    moved = 0

    def acked(delivery: Delivery):
        def settle(ok: bool) -> None:
            nonlocal moved
            delivery.ack()
            moved += 1
            if moved == count:
                done.set()

        return settle

    started = time.perf_counter()
    client.consume("src", send.send_nowait, prefetch=PREFETCH)
    async with trio.open_nursery() as nursery:

        async def forward() -> None:
            async for delivery in receive:
                client.publish(
                    "", "dst", delivery.body, header=delivery.header, on_durable=acked(delivery)
                )

        nursery.start_soon(forward)
        await done.wait()
        nursery.cancel_scope.cancel()
    await client.flush()
    return count / (time.perf_counter() - started)


async def measure(store: str, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        async with running_broker(Path(directory), store=store) as broker:
            client = open_client(broker)
            return {
                "publish": await publish_rate(client, count),
                "transfer": await transfer_rate(client, count),
            }


def main() -> None:
    configure_logging("warning", False)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    arguments = parser.parse_args()
    print("| store | publish (msg/s) | acked transfer (msg/s) |")
    print("|---|---|---|")
    for store in ("memory", "bdb"):
        rates = trio.run(measure, store, arguments.count)
        print(f"| {store} | {rates['publish']:,.0f} | {rates['transfer']:,.0f} |")


if __name__ == "__main__":
    main()
