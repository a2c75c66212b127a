"""A private RabbitMQ node for the client tests (Debian's ``rabbitmq-server``).

Started on free loopback ports in a temporary directory, never as the system service; ready
when it completes an AMQP handshake (polled with a deadline), stopped with rabbitmqctl and,
if it lingers, by killing its process group.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

START_DEADLINE = 60.0
#: Unique per test process: two runs on one machine (or a benchmark node) must not clash.
NODE_NAME = f"clienttest{os.getpid()}@localhost"
# Debian's /usr/sbin wrappers `su` to the rabbitmq user when run as root; the real scripts
# run as whoever calls them.
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def amqp_ready(port: int) -> bool:
    """True when an AMQP broker on ``port`` answers the protocol header with connection.start."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            head = sock.recv(11)
    except OSError:
        return False
    # method frame on channel 0 carrying class 10 (connection) method 10 (start)
    return len(head) == 11 and head[0] == 1 and head[7:11] == b"\x00\x0a\x00\x0a"


def _rabbitmq_tool(name: str) -> str | None:
    candidate = RABBITMQ_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


class RabbitMQNode:
    """A private RabbitMQ node in ``base`` (mnesia, logs, cookie), not the system service."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        return os.environ | {
            "RABBITMQ_NODENAME": NODE_NAME,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "HOME": str(self.base),  # the Erlang cookie is created and read here
        }

    @property
    def url(self) -> str:
        """The node's AMQP URL for the default guest user and vhost."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        """Start the node and wait (bounded) until it completes an AMQP handshake."""
        server = _rabbitmq_tool("rabbitmq-server")
        if server is None:
            pytest.skip("rabbitmq-server is not installed (apt-get install -y rabbitmq-server)")
        output = (self.base / "server.out").open("wb")
        self.process = subprocess.Popen(
            [server],
            env=self.env,
            cwd=self.base,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if amqp_ready(self.port):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        # Installed but broken is a failure, not a skip: CI installs it on purpose.
        raise RuntimeError(
            f"rabbitmq-server did not become ready within {START_DEADLINE} s: {tail}"
        )

    def log_tail(self, lines: int = 8) -> str:
        """The last lines the server printed, for skip reasons and failures."""
        path = self.base / "server.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> args...`` against this node."""
        ctl = _rabbitmq_tool("rabbitmqctl") or "rabbitmqctl"
        return subprocess.run(
            [ctl, "-n", NODE_NAME, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop(self) -> None:
        """Stop the node with rabbitmqctl; kill its process group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ctl("stop", timeout=30)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._kill_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill_group(signal.SIGKILL)
                self.process.wait(timeout=10)

    def _kill_group(self, signum: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
