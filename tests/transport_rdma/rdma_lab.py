"""Helpers of the device tests: stream pairs over real RDMA and broker processes with RDMA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from plugmq_transport_rdma import device
from plugmq_transport_rdma.dialer import RdmaDialer
from plugmq_transport_rdma.listener import RdmaListener
from plugmq_transport_rdma.settings import RingSettings
from plugmq_transport_rdma.stream import RdmaStream

SKIP_REASON = "no RDMA device; run `make test-rdma`"
USER = "rdma"


def rdma_ready() -> bool:
    """True inside the lab (PLUGMQ_RDMA=1) when a device is really there."""
    return os.environ.get("PLUGMQ_RDMA") == "1" and device.probe().available


needs_rdma = pytest.mark.skipif(not rdma_ready(), reason=SKIP_REASON)


async def rdma_stream_pair(
    listener: RdmaListener, ip: str, ring: RingSettings | None = None
) -> tuple[RdmaStream, RdmaStream]:
    """(dialer side, accepted side), HELLOs exchanged."""
    accepted: list[RdmaStream] = []

    async def accept() -> None:
        stream = await listener.accept()
        await stream.wait_established()
        accepted.append(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept)
        client = await RdmaDialer(ring or listener.ring).dial(ip, listener.port)
    return client, accepted[0]


@dataclass
class RdmaBroker:
    """A broker process listening on TCP (loopback) and RDMA (the lab IP).

    The lab installs no store plugin, so the built-in memory store is used.
    """

    tmp: Path
    ip: str
    args: list[str] = field(default_factory=list)
    tcp: str = ""
    rdma: str = ""
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        """The broker's JSON log."""
        return self.tmp / "broker.log"

    def start(self, timeout: float = 90.0) -> RdmaBroker:
        """Start; return once ``broker_active`` lists both listeners."""
        command = [
            sys.executable, "-m", "plugmq", "broker", "--log-json",
            "--data-dir", str(self.tmp / "data"), "--interface", "127.0.0.1", "--port", "0",
            "--rdma-interface", self.ip, "--rdma-port", "0", *self.args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "broker_active":
                    self._addresses(event["listening"])
                    self._add_rdma_user()
                    return self
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"broker not active:\n{self.log_path.read_text()[-3000:]}")

    def _addresses(self, listening: list[str]) -> None:
        for address in listening:
            host_port = address.split("://", 1)[1]
            if address.startswith("tcp://"):
                self.tcp = f"amqp://guest:guest@{host_port}/"
            elif address.startswith("rdma://"):
                self.rdma = f"amqp+rdma://{USER}:{USER}@{host_port}/"
        assert self.tcp and self.rdma, listening

    def _add_rdma_user(self) -> None:
        # guest may only log in from loopback (RabbitMQ's rule) and an RDMA peer is not one:
        # create user rdma/rdma through the admin CLI over loopback TCP.
        for args in (
            ["user", "add", USER, USER, "--tag", "administrator"],
            ["permissions", "set", USER, ".*", ".*", ".*"],
        ):
            subprocess.run(
                [sys.executable, "-m", "plugmq", *args, "--broker", self.tcp],
                check=True,
                capture_output=True,
                timeout=120,
            )

    def events(self) -> list[dict]:
        """Every JSON log line so far."""
        if not self.log_path.exists():
            return []
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def alive(self) -> bool:
        """Still running?"""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
