"""Durable queues larger than their memory budget keep their tail only in the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from support.broker_process import BrokerProcess, broker_process

PERSISTENT = pika.BasicProperties(delivery_mode=2)
BODY = 1000
COUNT = 3000  # 3 MB through a queue allowed 100 kB of ready messages in memory


@pytest.fixture
def paging_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = broker_process(tmp_path, "--queue-max-memory", "100000").start()
    yield process
    process.stop()


def body(number: int) -> bytes:
    return number.to_bytes(4, "big") * (BODY // 4)


def fill(broker: BrokerProcess, queue: str) -> None:
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port)) as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        for number in range(COUNT):
            channel.basic_publish("", queue, body(number), PERSISTENT)
        assert channel.queue_declare(queue, passive=True).method.message_count == COUNT


def consume_all(broker: BrokerProcess, queue: str) -> list[int]:
    numbers = []
    with pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port)) as conn:
        channel = conn.channel()
        channel.basic_qos(prefetch_count=200)
        for method, _, payload in channel.consume(queue, inactivity_timeout=5):
            assert method is not None, f"stalled after {len(numbers)} messages"
            assert payload == body(int.from_bytes(payload[:4], "big"))
            numbers.append(int.from_bytes(payload[:4], "big"))
            channel.basic_ack(method.delivery_tag)
            if len(numbers) == COUNT:
                break
        channel.cancel()
    return numbers


def test_paged_queue_delivers_everything_in_order(paging_broker: BrokerProcess) -> None:
    fill(paging_broker, "big")
    assert consume_all(paging_broker, "big") == list(range(COUNT))


def test_paged_queue_survives_kill_9_and_pages_on_recovery(paging_broker: BrokerProcess) -> None:
    fill(paging_broker, "big")
    paging_broker.kill()
    paging_broker.restart()
    assert consume_all(paging_broker, "big") == list(range(COUNT))


def test_basic_get_reaches_paged_messages(paging_broker: BrokerProcess) -> None:
    fill(paging_broker, "polled")
    with pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", paging_broker.port)
    ) as conn:
        channel = conn.channel()
        got = []
        for _ in range(COUNT):
            method, _, payload = channel.basic_get("polled", auto_ack=True)
            assert method is not None, f"get-empty after {len(got)} messages"
            got.append(int.from_bytes(payload[:4], "big"))
        assert channel.basic_get("polled")[0] is None
    assert got == list(range(COUNT))


def test_purge_drops_the_paged_tail_durably(paging_broker: BrokerProcess) -> None:
    fill(paging_broker, "purged")
    with pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", paging_broker.port)
    ) as conn:
        assert conn.channel().queue_purge("purged").method.message_count == COUNT
    assert paging_broker.stop() == 0
    paging_broker.restart()
    with pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", paging_broker.port)
    ) as conn:
        assert conn.channel().queue_declare("purged", passive=True).method.message_count == 0
