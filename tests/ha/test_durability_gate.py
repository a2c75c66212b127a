"""The replication seam: a durability gate holds publisher confirms until it releases them,
and a gate that fails records gets them nacked (tests/ha/plugins/toy_replicator.py).

A real BDB broker process, a real pika publisher in confirm mode (in a thread, since its
publish blocks until the confirm), the gate driven by signals and watched through its log.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from support.broker_process import BrokerProcess, broker_process

PLUGIN = str(Path(__file__).parent / "plugins" / "toy_replicator.py")


@pytest.fixture
def gated_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    # Only what the test needs: an autoloaded plugin that waits for durability while it starts
    # (federation stores its broker id) would wait for this gate, which releases only on signals.
    process = broker_process(
        tmp_path,
        "--no-autoload",
        *("--load-module", "transport_tcp", "--load-module", "store_bdb"),
        *("--load-module", PLUGIN),
    ).start()
    yield process
    process.stop()


class Publisher(threading.Thread):
    """Publishes one persistent message with confirms (or only declares the queue)."""

    def __init__(self, port: int, body: bytes | None) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.body = body
        self.done = threading.Event()
        self.outcome: str | None = None

    def run(self) -> None:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", self.port))
        try:
            channel = connection.channel()
            if self.body is None:
                channel.queue_declare("gated", durable=True)
                self.outcome = "declared"
                return
            channel.confirm_delivery()
            try:
                channel.basic_publish("", "gated", self.body, pika.BasicProperties(delivery_mode=2))
                self.outcome = "acked"
            except pika.exceptions.NackError:
                self.outcome = "nacked"
        finally:
            connection.close()
            self.done.set()


def _declare_queue(broker: BrokerProcess) -> None:
    """Declare the durable queue, releasing the gate until declare-ok arrives (a durable
    reply waits for the same durability as a confirm). Nothing else is in flight."""
    declarer = Publisher(broker.port, None)
    declarer.start()
    while not declarer.done.wait(0.1):
        broker.process.send_signal(signal.SIGUSR1)
    assert declarer.outcome == "declared"


def _hold_publish(broker: BrokerProcess, body: bytes) -> Publisher:
    """Start a publisher and wait until the gate holds its message."""
    publisher = Publisher(broker.port, body)
    publisher.start()
    written = broker.wait_event("toy_gate_written", timeout=10, held=1)
    assert written["held"] == 1
    return publisher


def test_gate_holds_the_confirm_until_released(gated_broker: BrokerProcess) -> None:
    _declare_queue(gated_broker)
    publisher = _hold_publish(gated_broker, b"held")
    # The store has the record; only the gate holds the confirm back.
    assert not publisher.done.wait(0.5), "confirmed before the gate released it"
    gated_broker.process.send_signal(signal.SIGUSR1)
    assert publisher.done.wait(10)
    assert publisher.outcome == "acked"


def test_failed_records_are_nacked_then_later_ones_confirmed(gated_broker: BrokerProcess) -> None:
    _declare_queue(gated_broker)
    publisher = _hold_publish(gated_broker, b"never replicated")
    gated_broker.process.send_signal(signal.SIGUSR2)
    assert publisher.done.wait(10)
    assert publisher.outcome == "nacked"
    failed = gated_broker.wait_event("journal_not_confirmed", timeout=5)
    assert failed["reason"] == "toy replicas unreachable"

    second = _hold_publish(gated_broker, b"replicated")
    gated_broker.process.send_signal(signal.SIGUSR1)
    assert second.done.wait(10)
    assert second.outcome == "acked"
