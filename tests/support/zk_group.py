"""A group of real ``--ha zookeeper`` broker processes for tests."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

from support.broker_process import BrokerProcess, broker_process

_ports = random.Random()

#: Short enough for fault tests, long enough for a loaded 2-core machine.
SESSION_TIMEOUT = 4.0


class HAGroup:
    """``size`` brokers sharing ``zk_path``; each with its own replication port and data dir."""

    def __init__(
        self,
        tmp_path: Path,
        zk_hosts: str,
        zk_path: str,
        size: int = 3,
        replicas: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.zk_path = zk_path
        self.brokers: list[BrokerProcess] = []
        for index in range(size):
            self.brokers.append(
                zk_broker(
                    tmp_path,
                    zk_hosts,
                    zk_path,
                    "--replicas",
                    str(replicas or size),
                    *extra,
                    name=f"b{index}",
                )
            )

    def start(self, *indexes: int) -> None:
        """Start these brokers (all by default) as listening replicas."""
        for index in indexes or range(len(self.brokers)):
            self.brokers[index].start(ready_event="broker_listening")

    def master(self, timeout: float = 60.0, among: tuple[int, ...] | None = None) -> int:
        """Wait until one of the live brokers logs it is master; its index."""
        deadline = time.monotonic() + timeout
        candidates = among if among is not None else range(len(self.brokers))
        while time.monotonic() < deadline:
            for index in candidates:
                broker = self.brokers[index]
                if not broker.alive:
                    continue
                for event in broker.events()[broker.events_seen :]:
                    if event.get("event") == "ha_zk.promoted":
                        broker.wait_event("ha_zk.promoted")
                        return index
            time.sleep(0.05)
        raise TimeoutError(
            "no master elected:\n" + "\n---\n".join(b.tail(15) for b in self.brokers)
        )

    def wait_caught_up(self, master: int, timeout: float = 60.0) -> None:
        """Wait until every live broker but ``master`` logged ``ha_zk.caught_up`` since its
        start: the group can lose its master (a replica still in its first sync has no
        position to report, so it does not count toward the election's quorum)."""
        for index, broker in enumerate(self.brokers):
            if index != master and broker.alive:
                broker.wait_event("ha_zk.caught_up", timeout=timeout)

    def stop(self) -> None:
        """Stop every broker still running (kill: a clean stop is not under test here)."""
        for broker in self.brokers:
            broker.kill()


def zk_broker(tmp_path: Path, zk_hosts: str, zk_path: str, *extra: str, name: str) -> BrokerProcess:
    """One ``--ha zookeeper`` broker (not started) with its own replication port; ``extra``
    flags come last (the last value of a flag counts)."""
    return broker_process(
        tmp_path,
        "--ha",
        "zookeeper",
        "--zk-address",
        zk_hosts,
        "--zk-path",
        zk_path,
        "--replication-address",
        f"127.0.0.1:{replication_port()}",
        "--zk-session-timeout",
        str(SESSION_TIMEOUT),
        "--bdb-sync",
        "nosync",
        *extra,
        name=name,
    )


def replication_port() -> int:
    """A free port below the kernel's ephemeral range: repmgr's outgoing connections take
    ephemeral ports, so a "free" one from that range may be taken by the time it binds."""
    while True:
        port = _ports.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
