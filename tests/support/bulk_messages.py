"""Fill a durable queue with a million numbered persistent messages, and drain it by number.

For the catch-up test and benchmark of ``ha_zk`` (issue 16). The fastest honest way found to
put 1M messages into a replicated store from outside: ``plugmq.client`` with publisher confirms
on several channels of one connection, each publishing a batch of 1000 and then waiting for the
batch's confirms (one wait per batch, not one task per message; the broker's group commit makes
a batch one replicated transaction or a few). Every message ends up confirmed: a nacked one is
published again (the broker said it is not durable), and :class:`Filled` names those, since a
nacked message may have been stored after all. Bodies start with the message's number (8 bytes,
big-endian), so a drain checks every number without keeping the bodies.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from plugmq.client import PublishNacked, connect

NUMBER = struct.Struct(">Q")
PERSISTENT = {"delivery_mode": 2}
#: The drain's prefetch and how often it acks (multiple): few acks, never a stalled window.
PREFETCH, ACK_EVERY = 5000, 1000


def body(number: int, size: int = 100) -> bytes:
    """The body of message ``number``: its number, padded to ``size`` bytes."""
    return NUMBER.pack(number) + bytes(max(size - NUMBER.size, 0))


@dataclass
class Filled:
    """What :func:`fill` did: its duration and the numbers it had to publish again."""

    seconds: float
    #: Numbers the broker nacked at least once (then published again until confirmed). A nacked
    #: message may still have been stored (ha_zk: acks of the quorum late), so these may come
    #: back twice; every other number exactly once.
    republished: set[int] = field(default_factory=set)
    #: Batches (of any channel) that had nacked messages, counted per attempt.
    nacked_batches: int = 0


async def fill(
    url: str,
    queue: str,
    count: int,
    *,
    channels: int = 8,
    batch: int = 1000,
    size: int = 100,
    attempts: int = 20,
    first: int = 0,
) -> Filled:
    """Publish messages ``first..first+count-1`` to durable ``queue``, every one confirmed.

    ``channels`` publishers share the numbers (each takes the next batch). Nacked messages are
    published again after a pause that doubles (0.5 s to 8 s), at most ``attempts`` times each
    batch; raises ``PublishNacked`` when a batch is still refused after that.
    """
    next_batch, end = [first], first + count
    filled = Filled(0.0)

    async def publish_batch(channel: Any, numbers: list[int]) -> list[int]:
        """Publish ``numbers``, wait for their confirms; the nacked ones."""
        first_seq = None
        for number in numbers:
            seq = await channel.publish("", queue, body(number, size), PERSISTENT)
            first_seq = seq if first_seq is None else first_seq
        try:
            await channel.wait_for_confirms()
        except PublishNacked as nacked:
            return [numbers[seq - first_seq] for seq in nacked.sequence_numbers]
        return []

    async def publisher(connection: Any) -> None:
        async with connection.channel() as channel:
            await channel.confirm_select()
            while next_batch[0] < end:
                start = next_batch[0]
                next_batch[0] = stop = min(start + batch, end)
                numbers = list(range(start, stop))
                for attempt in range(attempts):
                    numbers = await publish_batch(channel, numbers)
                    if not numbers:
                        break
                    filled.republished.update(numbers)
                    filled.nacked_batches += 1
                    # Nacked: the replicas are behind. Publishing again at once would only add
                    # to their backlog (a nacked record is still shipped): give them time.
                    await trio.sleep(min(0.5 * 2**attempt, 8.0))
                else:
                    raise PublishNacked(numbers)

    started = time.monotonic()
    async with connect(url, connection_name="bulk-fill") as connection:
        async with connection.channel() as setup:
            await setup.queue_declare(queue, durable=True)
        async with trio.open_nursery() as nursery:
            for _ in range(channels):
                nursery.start_soon(publisher, connection)
    filled.seconds = time.monotonic() - started
    return filled


@dataclass
class Drained:
    """What :func:`drain` saw."""

    #: One counter per number ``0..expected-1`` (saturating at 255), then one for any other.
    seen: bytearray
    #: The longest wait for the next message while the queue still held some (seconds).
    longest_gap: float = 0.0
    #: Messages the queue still reported when the drain gave up (0 when it emptied).
    left: int = 0


async def drain(url: str, queue: str, expected: int, *, timeout: float = 300.0) -> Drained:
    """Consume (and ack) ``queue`` until it is empty; count each number below ``expected``.

    Empty means nothing came for 5 s and the queue's message count is 0 (the count alone is not
    enough: duplicates of republished messages may follow ``expected`` deliveries). When the
    count is not 0 the broker is only slow (e.g. paging the tail in from the store) and the
    drain waits on, up to ``timeout`` in all.
    """
    drained = Drained(bytearray(expected + 1))
    seen = drained.seen
    received = 0
    with trio.move_on_after(timeout):
        async with (
            connect(url, connection_name="bulk-drain") as connection,
            connection.channel() as channel,
            channel.consume(queue, prefetch=PREFETCH) as consumer,
        ):
            unacked = 0
            last = time.monotonic()
            distinct = 0
            while True:
                if distinct == expected and not await _ready(connection, queue):
                    break  # every number came and nothing is left: no need to wait 5 s
                with trio.move_on_after(5.0):
                    message = await consumer.__anext__()
                    now = time.monotonic()
                    drained.longest_gap = max(drained.longest_gap, now - last)
                    last = now
                    (number,) = NUMBER.unpack_from(message.body)
                    cell = number if number < expected else expected
                    if cell < expected and not seen[cell]:
                        distinct += 1
                    seen[cell] = min(seen[cell] + 1, 255)
                    received += 1
                    unacked = message.delivery_tag
                    if received % ACK_EVERY == 0:
                        await channel.ack(unacked, multiple=True)
                        unacked = 0
                    continue
                if unacked:
                    await channel.ack(unacked, multiple=True)
                    unacked = 0
                drained.left = await _ready(connection, queue)
                if not drained.left:
                    break  # nothing came for 5 s and nothing is left
            if unacked:
                await channel.ack(unacked, multiple=True)
            drained.left = await _ready(connection, queue)
    return drained


async def _ready(connection: Any, queue: str) -> int:
    """Messages ``queue`` holds ready (a passive declare on a channel of its own)."""
    async with connection.channel() as channel:
        declared = await channel.queue_declare(queue, passive=True)
        return declared.message_count
