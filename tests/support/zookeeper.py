"""Real ZooKeeper servers for tests (Debian's ``zookeeper`` package, started without zkServer.sh).

A server is ``java -cp /usr/share/java/* ... QuorumPeerMain zoo.cfg`` on a free loopback port
with a temporary data directory; readiness is the ``ruok`` four-letter word answered ``imok``
(never a sleep). :class:`ZooKeeperEnsemble` starts one server or three (a real quorum, for the
tests that kill ZooKeeper's leader). Every process started here is stopped here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLASSPATH = "/usr/share/java/*"
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 250


def available() -> bool:
    """Whether Debian's zookeeper package and java are installed."""
    return shutil.which("java") is not None and Path("/usr/share/java/zookeeper.jar").exists()


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def four_letter(port: int, word: str, timeout: float = 1.0) -> str:
    """Send a four-letter word (``ruok``, ``srvr``) and return the answer ('' if none)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(word.encode())
            chunks = []
            while chunk := connection.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


@dataclass
class ZooKeeperServer:
    """One server of an ensemble."""

    myid: int
    directory: Path
    client_port: int
    peer_ports: tuple[int, int]
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        """Start the java process (readiness: :meth:`wait_ready`)."""
        log = (self.directory / "zookeeper.log").open("ab")
        self.process = subprocess.Popen(
            [
                "java",
                "-Xmx256m",
                "-cp",
                CLASSPATH,
                f"-Dzookeeper.log.dir={self.directory}",
                MAIN,
                str(self.directory / "zoo.cfg"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the server serves (``srvr`` answers with a mode), or raise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"ZooKeeper {self.myid} exited: {self.log_tail()}")
            if four_letter(self.client_port, "ruok") == "imok" and "Mode:" in four_letter(
                self.client_port, "srvr"
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"ZooKeeper {self.myid} not ready in {timeout} s: {self.log_tail()}")

    def mode(self) -> str:
        """``leader``, ``follower`` or ``standalone`` ('' when not serving)."""
        for line in four_letter(self.client_port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def kill(self) -> None:
        """kill -9 the server."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self) -> str:
        """The end of the server's log."""
        path = self.directory / "zookeeper.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


class ZooKeeperEnsemble:
    """``size`` servers (1 = standalone) in ``directory``; :attr:`hosts` for kazoo/brokers."""

    def __init__(self, directory: Path, size: int = 1) -> None:
        self.servers = [
            ZooKeeperServer(
                i + 1, directory / f"zk{i + 1}", free_port(), (free_port(), free_port())
            )
            for i in range(size)
        ]
        for server in self.servers:
            self._configure(server)

    @property
    def hosts(self) -> str:
        """``host:port,host:port`` of every server."""
        return ",".join(server.address for server in self.servers)

    def _configure(self, server: ZooKeeperServer) -> None:
        data = server.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"tickTime={TICK_MS}",
            "initLimit=40",
            "syncLimit=10",
            f"dataDir={data}",
            f"clientPort={server.client_port}",
            "clientPortAddress=127.0.0.1",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,stat",
            "minSessionTimeout=500",
            "maxSessionTimeout=60000",
        ]
        if len(self.servers) > 1:
            (data / "myid").write_text(f"{server.myid}\n")
            for other in self.servers:
                quorum, election = other.peer_ports
                lines.append(f"server.{other.myid}=127.0.0.1:{quorum}:{election}")
        (server.directory / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def start(self) -> ZooKeeperEnsemble:
        """Start every server and wait until each serves."""
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.wait_ready()
        return self

    def leader(self) -> ZooKeeperServer:
        """The ensemble's current leader (the only server of a standalone one)."""
        for server in self.servers:
            if server.mode() in ("leader", "standalone"):
                return server
        raise RuntimeError("no ZooKeeper leader")

    def stop(self) -> None:
        """Kill every server."""
        for server in self.servers:
            server.kill()
