"""The memory high watermark: publishers are blocked, not dropped, and resume when it clears."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from support.broker_process import BrokerProcess, broker_process

WATERMARK = 1_000_000


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = broker_process(
        tmp_path, "--store", "memory", "--memory-high-watermark", str(WATERMARK)
    ).start()
    yield process
    process.stop()


def test_publisher_is_blocked_above_watermark_and_unblocked_after_drain(
    small_broker: BrokerProcess,
) -> None:
    parameters = pika.ConnectionParameters("127.0.0.1", small_broker.port)
    publisher = pika.BlockingConnection(parameters)
    consumer = pika.BlockingConnection(parameters)
    events: list[str] = []
    publisher.add_on_connection_blocked_callback(lambda *_: events.append("blocked"))
    publisher.add_on_connection_unblocked_callback(lambda *_: events.append("unblocked"))
    try:
        channel = publisher.channel()
        channel.queue_declare("alarm-test")
        for _ in range(12):  # 1.2 MB > 1 MB watermark
            channel.basic_publish("", "alarm-test", b"x" * 100_000)
        publisher.process_data_events(time_limit=1)
        assert events == ["blocked"]
        drained = consumer.channel()
        for _ in range(12):
            _, _, body = drained.basic_get("alarm-test", auto_ack=True)
            assert len(body) == 100_000
        publisher.process_data_events(time_limit=1)
        # Publishes still in the socket when the alarm rose are read after it clears and may
        # raise it once more before the drain catches up: blocked/unblocked alternate.
        assert events[-1] == "unblocked"
        assert events == ["blocked", "unblocked"] * (len(events) // 2)
        channel.basic_publish("", "alarm-test", b"after")
        publisher.process_data_events(time_limit=0.5)
        assert drained.basic_get("alarm-test", auto_ack=True)[2] == b"after"
    finally:
        publisher.close()
        consumer.close()
    alarms = [e["event"] for e in small_broker.events() if e["event"].startswith("memory_alarm")]
    assert alarms == ["memory_alarm", "memory_alarm_cleared"] * len(events[::2])
