"""Start, crash and stop the brokers the benchmarks compare: plugmq and a private RabbitMQ node.

Both run on loopback ports of their own in a scratch directory; neither touches a system
service. RabbitMQ is Debian's ``rabbitmq-server`` package started from
``/usr/lib/rabbitmq/bin`` (the ``/usr/sbin`` wrappers switch to the rabbitmq user when run as
root), with its mnesia and log directories created first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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
    return len(head) == 11 and head[0] == 1 and head[7:11] == b"\x00\x0a\x00\x0a"


def _kill_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


class PlugmqBroker:
    """``python -m plugmq broker`` (same as ``uv run plugmq broker``) in ``base``.

    ``python`` is the interpreter that runs it (default: this one), so two builds of plugmq,
    each installed in its own venv, can be compared side by side.
    """

    kind = "plugmq"

    def __init__(
        self, base: Path, *args: str, port: int | None = None, python: str | None = None
    ) -> None:
        self.base = base
        self.python = python or sys.executable
        self.port = port or free_port()
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = base / "plugmq.log"

    @property
    def url(self) -> str:
        """AMQP URL of the broker."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int:
        """The broker's process id (the Python interpreter itself, not a wrapper)."""
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        """The command line that starts the broker."""
        return [
            self.python, "-m", "plugmq", "broker",
            "--interface", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.base / "data"), "--log-json", "--log-level", "warning",
            *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 600.0) -> float:
        """Start and wait until it accepts AMQP; return the seconds that took."""
        self.base.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.monotonic() - began < timeout:
            if amqp_ready(self.port):
                return time.monotonic() - began
            if self.process.poll() is not None:
                raise RuntimeError(f"plugmq exited with {self.process.returncode}: {self.tail()}")
            time.sleep(0.02)
        raise TimeoutError(f"plugmq not ready after {timeout} s: {self.tail()}")

    def tail(self, lines: int = 10) -> str:
        """The end of the broker's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill9(self) -> None:
        """Crash the broker (SIGKILL) and reap it."""
        if self.process is not None and self.process.poll() is None:
            _kill_group(self.process, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def events(self) -> list[dict]:
        """JSON log events written so far."""
        found = []
        if self.log_path.exists():
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        found.append(json.loads(line))
        return found


class RabbitMQBroker:
    """A private RabbitMQ node (Debian's package) in ``base``, never the system service."""

    kind = "rabbitmq"

    def __init__(
        self, base: Path, node: str = "plugmqbench@localhost", plugins: Sequence[str] = ()
    ) -> None:
        self.base = base
        self.node = node
        self.plugins = list(plugins)
        self.port = free_port()
        self.dist_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """AMQP URL of the node."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        """The variables that make the node private (ports, directories, cookie)."""
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        # plugins are enabled by this file before start (rabbitmq-plugins --offline does the same)
        (self.base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        return os.environ | {
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "HOME": str(self.base),
        }

    def tool(self, name: str) -> str:
        """Path of a RabbitMQ script (the real one, not the /usr/sbin wrapper)."""
        candidate = RABBITMQ_BIN / name
        found = str(candidate) if candidate.exists() else shutil.which(name)
        if found is None:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        return found

    def start(self, timeout: float = 600.0) -> float:
        """Start the node; return the seconds until it accepted AMQP."""
        self.base.mkdir(parents=True, exist_ok=True)
        subprocess.run(["epmd", "-daemon"], check=False)
        began = time.monotonic()
        with (self.base / "server.out").open("ab") as output:
            self.process = subprocess.Popen(
                [self.tool("rabbitmq-server")],
                env=self.environment(),
                cwd=self.base,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() - began < timeout:
            if amqp_ready(self.port):
                return time.monotonic() - began
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {self.tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"rabbitmq not ready after {timeout} s: {self.tail()}")

    @property
    def pid(self) -> int:
        """The node's beam.smp process (all of its schedulers are threads of it).

        It is found among the processes of the session the start script was put in.
        """
        assert self.process is not None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                name = (entry / "comm").read_text().strip()
                session = os.getsid(int(entry.name))
            except OSError:
                continue
            if name.startswith("beam.smp") and session == self.process.pid:
                return int(entry.name)
        raise RuntimeError(f"no beam.smp process for node {self.node}")

    def tail(self, lines: int = 10) -> str:
        """The end of the node's console output."""
        path = self.base / "server.out"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill9(self) -> None:
        """Crash the node: SIGKILL beam.smp and its process group."""
        with contextlib.suppress(RuntimeError, ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            _kill_group(self.process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(30)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl -n <node> args...``; return its output, raise if it fails."""
        done = subprocess.run(
            [self.tool("rabbitmqctl"), "-n", self.node, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def stop(self) -> None:
        """rabbitmqctl stop; kill the process group if the node lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(
                [self.tool("rabbitmqctl"), "-n", self.node, "stop"],
                env=self.environment(),
                capture_output=True,
                timeout=60,
                check=False,
            )
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()
