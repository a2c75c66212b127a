"""Helpers of the federation tests: the ``plugmq`` CLI as a subprocess, and real traffic.

Publishing and collecting go through pika over real sockets; ``plugmq route`` / ``link``
commands run as real subprocesses, as a user would type them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from typing import Any

import pika
import trio

from plugmq.management.client import management_client
from support.broker_process import BrokerProcess

CLI_TIMEOUT = 60
PERSISTENT = 2


def free_port() -> int:
    """A TCP port free now on loopback (for brokers that must keep their port on restart)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(broker: BrokerProcess, command: str, **arguments: Any) -> Any:
    """One management request in this process (no CLI start-up: for checks in loops)."""

    async def call() -> Any:
        async with management_client(broker.url) as client:
            return await client.call(command, **arguments)

    return trio.run(call)


def plugmq(*args: str) -> subprocess.CompletedProcess:
    """``python -m plugmq ARGS`` as a real subprocess, output captured (never raises)."""
    command = [sys.executable, "-m", "plugmq", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT)


def plugmq_ok(*args: str) -> str:
    """Run and require exit status 0; return stdout."""
    result = plugmq(*args)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def plugmq_json(*args: str) -> Any:
    """Run with ``--json``; parse stdout."""
    return json.loads(plugmq_ok(*args, "--json"))


def plugmq_error(*args: str) -> str:
    """Run, require a non-zero exit and one error line on stderr; return it."""
    result = plugmq(*args)
    assert result.returncode != 0, f"{args} should fail:\n{result.stdout}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugmq: error: "), result.stderr
    return lines[0]


def connect(broker: BrokerProcess) -> pika.BlockingConnection:
    """A pika connection to ``broker``."""
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def bind_queue(broker: BrokerProcess, queue: str, exchange: str, *keys: str) -> None:
    """Declare durable ``queue`` on ``broker`` bound to ``exchange`` with each key."""
    with connect(broker) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        for key in keys:
            channel.queue_bind(queue, exchange, key)


def publish(
    broker: BrokerProcess,
    exchange: str,
    messages: Iterable[tuple[str, bytes]],
    message_ids: bool = False,
) -> int:
    """Publish (routing key, body) pairs persistent with confirms; return how many."""
    count = 0
    with connect(broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for key, body in messages:
            properties = pika.BasicProperties(
                delivery_mode=PERSISTENT, message_id=body.decode() if message_ids else None
            )
            channel.basic_publish(exchange, key, body, properties)
            count += 1
    return count


def collect(
    broker: BrokerProcess, queue: str, count: int, timeout: float = 20.0
) -> list[tuple[str, bytes, dict]]:
    """Take messages from ``queue`` until ``count`` arrived (or fail at ``timeout``).

    Returns (routing key, body, headers) in arrival order.
    """
    got: list[tuple[str, bytes, dict]] = []
    deadline = time.monotonic() + timeout
    with connect(broker) as connection:
        channel = connection.channel()
        while len(got) < count:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{len(got)} of {count} messages arrived in {queue}")
                time.sleep(0.02)
                continue
            got.append((method.routing_key, body, properties.headers or {}))
    return got


def depth(broker: BrokerProcess, queue: str) -> int:
    """Messages ready in ``queue``."""
    with connect(broker) as connection:
        return connection.channel().queue_declare(queue, passive=True).method.message_count


def collect_all(
    broker: BrokerProcess, queue: str, wanted: set[bytes], timeout: float = 60.0
) -> list[bytes]:
    """Take bodies from ``queue`` until every body of ``wanted`` came (duplicates included,
    in arrival order) and the queue is empty; fail at ``timeout`` naming what is missing."""
    got: list[bytes] = []
    missing = set(wanted)
    deadline = time.monotonic() + timeout
    with connect(broker) as connection:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                got.append(body)
                missing.discard(body)
                continue
            if not missing:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} never arrived: {sorted(missing)[:10]}")
            time.sleep(0.02)
