"""aio-pika survives master kills by cycling a list of URLs.

aio-pika connects to one URL: ``connect`` and ``connect_robust`` take a single ``url``, and
``connect_robust``'s reconnection retries that same URL, which after a kill -9 is a dead or
standby broker. The pattern for a group is therefore the application's own loop over the list
(``itertools.cycle``): ``connect`` to the next URL, work until the connection fails (a
``CONNECTION_EXCEPTIONS`` error, or the queue iterator ending when its channel closes), then go
on. A standby refuses with 320 ``CONNECTION_FORCED``, an ``AMQPError``, so the loop moves on.
The publisher republishes the message whose confirm it did not get. Nothing knows about plugmq.
"""

from __future__ import annotations

import asyncio
import itertools
import threading

import aio_pika
from aio_pika import DeliveryMode, Message
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from support.failover_clients import kill_points, run_through_kills
from support.failover_group import FailoverGroup
from support.ledger import Ledger

QUEUE = "aio-pika-failover"
TOTAL = 300
#: Between two rounds over the list, so a loop does not spin while a takeover runs.
ROUND_PAUSE = 0.1


async def publisher(urls: list[str], ledger: Ledger) -> None:
    """Publish m0..m{TOTAL-1} persistently; ``publish`` returns once the broker confirmed."""
    number = 0
    for url in itertools.cycle(urls):
        if number >= TOTAL:
            return
        try:
            async with await aio_pika.connect(url, timeout=5) as connection:
                channel = await connection.channel(publisher_confirms=True)
                await channel.declare_queue(QUEUE, durable=True)
                while number < TOTAL:
                    message_id = f"m{number}"
                    ledger.publish(message_id)
                    message = Message(
                        message_id.encode(),
                        delivery_mode=DeliveryMode.PERSISTENT,
                        message_id=message_id,
                    )
                    await channel.default_exchange.publish(message, routing_key=QUEUE)
                    ledger.confirm(message_id)
                    number += 1
        except CONNECTION_EXCEPTIONS:
            await asyncio.sleep(ROUND_PAUSE)


async def consumer(urls: list[str], ledger: Ledger) -> None:
    """Consume and ack forever, going on to the next URL whenever the connection ends."""
    for url in itertools.cycle(urls):
        try:
            async with await aio_pika.connect(url, timeout=5) as connection:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=20)
                queue = await channel.declare_queue(QUEUE, durable=True)
                async with queue.iterator() as messages:
                    async for message in messages:
                        ledger.deliver(message.message_id)
                        await message.ack()
                        ledger.ack(message.message_id)
        except CONNECTION_EXCEPTIONS:
            pass  # this broker failed or refused: the next URL, after the pause below
        await asyncio.sleep(ROUND_PAUSE)


async def until_stopped(stop: threading.Event, work: asyncio.Future) -> None:
    """Run ``work`` until the test's ``stop`` is set (polled: it is a thread event)."""
    task = asyncio.ensure_future(work)
    while not stop.is_set() and not task.done():
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # the work failed on its own: the test sees why


def test_aio_pika_url_cycle_survives_two_master_kills(toy_group: FailoverGroup) -> None:
    ledger = toy_group.ledger
    assert ledger is not None
    urls = toy_group.urls
    report = run_through_kills(
        toy_group,
        lambda stop: asyncio.run(publisher(urls, ledger)),
        lambda stop: asyncio.run(until_stopped(stop, consumer(urls, ledger))),
        total=TOTAL,
        kill_at=kill_points(TOTAL, 2),
    )
    assert report.confirmed == TOTAL
    assert toy_group.takeovers == 2
