"""Fill a durable queue with a million numbered persistent messages, and drain it by number.

For the catch-up test and benchmark of ``ha_zk`` (issue 16): the fastest honest way to put 1M
messages into a replicated store from outside is ``plugmq.client`` with publisher confirms on
several channels, each publishing a batch and then waiting for the batch's confirms (one
confirm wait per batch instead of one task per message: pika's one-at-a-time confirms manage
~2k msg/s, this path is bound by the broker's group commit). Every message is confirmed or the
fill raises. Bodies start with the message's number (8 bytes, big-endian), so a drain can check
that every number came back exactly once without keeping the bodies.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import trio

from plugmq.client import connect

NUMBER = struct.Struct(">Q")
PERSISTENT = {"delivery_mode": 2}


def body(number: int, size: int = 100) -> bytes:
    """The body of message ``number``: its number, padded to ``size`` bytes."""
    return NUMBER.pack(number) + bytes(max(size - NUMBER.size, 0))


async def fill(
    url: str,
    queue: str,
    count: int,
    *,
    channels: int = 4,
    batch: int = 1000,
    size: int = 100,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Publish messages ``0..count-1`` to durable ``queue``, all confirmed; return seconds taken.

    ``channels`` publishers share the numbers (each takes the next batch); raises the client's
    ``PublishNacked`` if the broker refuses any of them.
    """
    next_batch = [0]
    done = [0]

    async def publisher(connection: object) -> None:
        async with connection.channel() as channel:  # type: ignore[attr-defined]
            await channel.confirm_select()
            while next_batch[0] < count:
                first = next_batch[0]
                last = min(first + batch, count)
                next_batch[0] = last
                for number in range(first, last):
                    await channel.publish("", queue, body(number, size), PERSISTENT)
                await channel.wait_for_confirms()
                done[0] += last - first
                if progress is not None:
                    progress(done[0])

    started = time.monotonic()
    async with connect(url, connection_name="bulk-fill") as connection:
        async with connection.channel() as setup:
            await setup.queue_declare(queue, durable=True)
        async with trio.open_nursery() as nursery:
            for _ in range(channels):
                nursery.start_soon(publisher, connection)
    return time.monotonic() - started


async def drain(url: str, queue: str, expected: int, *, timeout: float = 300.0) -> bytearray:
    """Consume (and ack) ``queue`` until ``expected`` messages came or ``timeout``; count each.

    Returns one counter per number ``0..expected-1`` (a byte, saturating at 255); numbers
    outside that range count in an extra last cell. Stops early when nothing comes for 5 s
    (the queue is empty), so a missing message costs 5 s, not the whole timeout.
    """
    seen = bytearray(expected + 1)
    received = 0
    with trio.move_on_after(timeout):
        async with (
            connect(url, connection_name="bulk-drain") as connection,
            connection.channel() as channel,
            channel.consume(queue, prefetch=2000) as consumer,
        ):
            unacked = 0
            while received < expected:
                with trio.move_on_after(5.0):
                    message = await consumer.__anext__()
                    (number,) = NUMBER.unpack_from(message.body)
                    cell = number if number < expected else expected
                    seen[cell] = min(seen[cell] + 1, 255)
                    received += 1
                    unacked = message.delivery_tag
                    if received % 500 == 0:
                        await channel.ack(unacked, multiple=True)
                        unacked = 0
                    continue
                break  # nothing came for 5 s: the queue is empty
            if unacked:
                await channel.ack(unacked, multiple=True)
    return seen
