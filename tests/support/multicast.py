"""A test's own ear and mouth on a discovery multicast group (loopback, no privileges).

:class:`MulticastListener` joins ``GROUP:PORT`` on 127.0.0.1 and collects what brokers
announce; :func:`send_datagram` sends anything there (bad input included).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

LOOPBACK = "127.0.0.1"


def free_udp_port() -> int:
    """A UDP port nobody is bound to now (a test's own multicast port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def split(target: str) -> tuple[str, int]:
    """``GROUP:PORT`` → ``(group, port)``."""
    group, _, port = target.rpartition(":")
    return group, int(port)


class MulticastListener:
    """Joined to the group on loopback until closed; reads announcements as dicts."""

    def __init__(self, target: str) -> None:
        self.group, self.port = split(target)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((self.group, self.port))
        membership = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton(LOOPBACK))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)

    def __enter__(self) -> MulticastListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every JSON announcement heard during ``seconds``."""
        heard = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            try:
                heard.append(json.loads(data))
            except ValueError:
                continue  # a test's own bad datagram
        return heard

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The first announcement ``predicate`` accepts; TimeoutError naming what was heard."""
        deadline = time.monotonic() + timeout
        heard: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            for announcement in self.collect(0.5):
                if predicate(announcement):
                    return announcement
                heard.append(announcement)
        raise TimeoutError(f"no matching announcement in {timeout}s; heard {heard[-5:]}")


def send_datagram(target: str, data: bytes) -> None:
    """Send ``data`` to the group, out of the loopback interface."""
    group, port = split(target)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.sendto(data, (group, port))
