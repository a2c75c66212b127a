"""The example third-party plugin, loaded with --load-module into a real broker."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from support.broker_process import BrokerProcess, broker_process

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "random_exchange.py"


@pytest.fixture
def random_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    process = broker_process(
        tmp_path,
        "--store",
        "memory",
        "--load-module",
        str(EXAMPLE),
        "--random-exchange-seed",
        "7",
    ).start()
    yield process
    process.stop()


def test_flag_of_example_plugin_shows_in_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plugmq", "broker", "--load-module", str(EXAMPLE), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--random-exchange-seed" in result.stdout


def test_x_random_exchange_spreads_messages_over_bound_queues(
    random_broker: BrokerProcess,
) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", random_broker.port))
    try:
        channel = connection.channel()
        channel.exchange_declare("spread", "x-random")
        queues = [channel.queue_declare("", exclusive=True).method.queue for _ in range(3)]
        for queue in queues:
            channel.queue_bind(queue, "spread", "ignored")
        channel.confirm_delivery()
        for number in range(300):
            channel.basic_publish("spread", "any", b"%d" % number)
        depths = [channel.queue_declare(q, passive=True).method.message_count for q in queues]
    finally:
        connection.close()
    assert sum(depths) == 300, "each message goes to exactly one queue"
    assert all(depth > 50 for depth in depths), f"uneven spread {depths}"
    declared = [e for e in random_broker.events() if e["event"] == "random_exchange_declared"]
    assert [(e["vhost"], e["exchange"]) for e in declared] == [("/", "spread")]
