"""broker.block_publishers: a plugin's own reason blocks publishers like the memory alarm
(connection.blocked with that reason, no reading from them), and unblocking resumes them.

A real broker process with tests/ha/plugins/toy_blocker.py and a real pika publisher that
registers for connection.blocked notifications.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pika
from support.broker_process import broker_process

PLUGIN = str(Path(__file__).parent / "plugins" / "toy_blocker.py")
REASON = "toy quorum lost: 1 of 3 replicas"


def test_a_plugin_blocks_and_unblocks_publishers(tmp_path: Path) -> None:
    broker = broker_process(tmp_path, "--store", "memory", "--load-module", PLUGIN).start()
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        notices: list[str] = []
        connection.add_on_connection_blocked_callback(
            lambda _conn, frame: notices.append(frame.method.reason)
        )
        connection.add_on_connection_unblocked_callback(
            lambda _conn, frame: notices.append("unblocked")
        )
        channel = connection.channel()
        channel.queue_declare("blocked.q")
        channel.basic_publish("", "blocked.q", b"before")  # a publisher now

        broker.process.send_signal(signal.SIGUSR1)
        alarm = broker.wait_event("publishers_blocked")
        assert alarm["reason"] == REASON
        broker.wait_event("toy_blocked")
        connection.process_data_events(time_limit=0)
        for _ in range(100):  # bounded: the notice is already on its way
            if notices:
                break
            connection.process_data_events(time_limit=0.05)
        assert notices == [REASON]

        broker.process.send_signal(signal.SIGUSR2)
        broker.wait_event("publishers_unblocked")
        broker.wait_event("toy_unblocked")
        for _ in range(100):
            if len(notices) == 2:
                break
            connection.process_data_events(time_limit=0.05)
        assert notices == [REASON, "unblocked"]
        channel.basic_publish("", "blocked.q", b"after")
        assert channel.queue_declare("blocked.q", passive=True).method.message_count == 2
        connection.close()
    finally:
        broker.stop()
