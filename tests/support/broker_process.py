"""Real plugmq broker processes for tests.

A broker is started as ``python -m plugmq broker`` on loopback with ``--port 0`` and JSON logs
going to a file; readiness is the ``broker_active`` event in that file (never a sleep), which
also names the port the kernel chose. Every process a test starts, the test stops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 30.0


@dataclass
class BrokerProcess:
    """A broker subprocess and what tests need to reach it."""

    data_dir: Path
    log_path: Path
    args: list[str]
    process: subprocess.Popen | None = None
    #: ``--interface`` given to the broker; None starts it with the default (every address).
    interface: str | None = "127.0.0.1"
    port: int = 0
    events_seen: int = field(default=0, repr=False)

    @property
    def url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:PORT/``."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(
        self, timeout: float = START_TIMEOUT, ready_event: str = "broker_active"
    ) -> BrokerProcess:
        """Start and wait for ``ready_event`` (``broker_active``; ``broker_listening`` for a
        standby that listens); raise with the log tail if it does not come."""
        command = [
            sys.executable,
            "-m",
            "plugmq",
            "broker",
            *(("--interface", self.interface) if self.interface is not None else ()),
            "--port",
            "0",
            "--log-json",
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        log_file = self.log_path.open("ab")
        self.events_seen = len(self.events())
        self.process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self.port = self.wait_listening(timeout, ready_event, consume=False)
        return self

    def wait_listening(
        self, timeout: float = START_TIMEOUT, name: str = "broker_active", consume: bool = True
    ) -> int:
        """Wait for a new ``name`` event; return the TCP port it names (the port given with
        ``--port`` when the event names no listeners: a standby that does not listen)."""
        event = self.wait_event(name, timeout, consume=consume)
        if "listening" not in event:
            return self.port
        tcp = [a for a in event["listening"] if a.startswith("tcp://")]
        return int(tcp[0].rsplit(":", 1)[1])

    def wait_event(
        self, name: str, timeout: float = START_TIMEOUT, consume: bool = True, **fields: object
    ) -> dict:
        """The first log event ``name`` (with ``fields``) written since the last one waited for.

        With ``consume`` the next wait starts after this event; ``start`` does not consume, so
        a test can still find events logged before readiness.

        Polls the log file (the broker writes it; there is no other channel), bounded by
        ``timeout``; raises with the log tail when the event does not come or the broker died.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            for index in range(self.events_seen, len(events)):
                event = events[index]
                if event.get("event") == name and all(
                    event.get(key) == value for key, value in fields.items()
                ):
                    if consume:
                        self.events_seen = index + 1
                    return event
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"broker exited with {self.process.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"no {name} {fields or ''} after {timeout}s:\n{self.tail()}")

    def events(self) -> list[dict]:
        """Every JSON log event written so far (non-JSON lines are skipped)."""
        events = []
        if not self.log_path.exists():
            return events
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events

    def tail(self, lines: int = 40) -> str:
        """The end of the broker's log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL (crash) and reap."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for a clean exit (SIGKILL after ``timeout``); return the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def restart(self) -> BrokerProcess:
        """Start again on the same data directory (and a new port)."""
        return self.start()

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None


def broker_process(
    tmp_path: Path, *args: str, name: str = "broker", interface: str | None = "127.0.0.1"
) -> BrokerProcess:
    """A not yet started broker with its own data directory and log under ``tmp_path``.

    Brokers listen on 127.0.0.1 only unless told another ``interface`` (None: the default).
    """
    data_dir = tmp_path / f"{name}-data"
    return BrokerProcess(data_dir, tmp_path / f"{name}.log", list(args), interface=interface)
