"""UDP multicast discovery: each master sends its announcement to GROUP:PORT every interval.

Datagrams are small JSON objects (:meth:`plugmq.api.GroupAnnouncement.to_dict`, with a version
field). Sending and receiving use the interface ``--discovery-interface`` (``IP_MULTICAST_IF``,
and the membership is joined there); ``IP_MULTICAST_LOOP`` is on so brokers on one host hear
each other, and the TTL is 1 (the announcements never leave the link). On Linux this works on
the loopback interface with no privileges, which is how the tests run.

Error handling: a datagram that is not a valid announcement is logged
(``discovery_bad_datagram``, with its sender and what is wrong; then at most once a minute per
sender address, with the running count) and ignored; a socket that
cannot be opened (a wrong interface address) is logged (``discovery_socket_failed``) and
tried again every interval; the broker keeps serving throughout.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable

import structlog
import trio

from plugmq.api import AnnouncementError, GroupAnnouncement
from plugmq_discovery.options import DiscoverySettings
from plugmq_discovery.table import PeerTable

log = structlog.get_logger("plugmq.discovery")

MAX_DATAGRAM = 8192
#: Seconds between two logs of bad datagrams from one sender address.
BAD_LOG_EVERY = 60.0


class MulticastDiscovery:
    """Announce ``announce()`` every interval; hand the peer set to ``publish`` on changes."""

    name = "multicast"

    def __init__(
        self,
        settings: DiscoverySettings,
        announce: Callable[[], GroupAnnouncement],
        publish: Callable[[dict[str, GroupAnnouncement]], None],
    ) -> None:
        self.settings = settings
        self.announce = announce
        self.publish = publish
        self.table: PeerTable | None = None
        self.bad_datagrams = 0
        self._bad_logged: dict[str, float] = {}

    @property
    def target(self) -> tuple[str, int]:
        """The multicast group and port."""
        return self.settings.multicast_group, self.settings.multicast_port

    async def run(self) -> None:
        """Open the socket (retrying every interval), then send and receive until cancelled."""
        while True:
            try:
                sock = self._open()
            except OSError as error:
                log.error(
                    "discovery_socket_failed",
                    multicast=f"{self.target[0]}:{self.target[1]}",
                    interface=self.settings.interface,
                    error=str(error),
                )
                await trio.sleep(self.settings.interval)
                continue
            with sock:
                await sock.bind(self.target)
                log.info(
                    "discovery_multicast_listening",
                    multicast=f"{self.target[0]}:{self.target[1]}",
                    interface=self.settings.interface,
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._send, sock)
                    nursery.start_soon(self._expire)
                    await self._receive(sock)

    def _open(self) -> trio.socket.SocketType:
        """A UDP socket joined to the group on the interface (several brokers share the port)."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            interface = socket.inet_aton(self.settings.interface)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            membership = struct.pack("4s4s", socket.inet_aton(self.target[0]), interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        except OSError:
            sock.close()
            raise
        return sock

    async def _send(self, sock: trio.socket.SocketType) -> None:
        while True:
            announcement = self.announce()
            if self.table is None:
                self.table = PeerTable(announcement.group)
            data = json.dumps(announcement.to_dict(), separators=(",", ":")).encode()
            try:
                await sock.sendto(data, self.target)
            except OSError as error:  # a network hiccup: the next interval tries again
                log.warning("discovery_send_failed", error=str(error))
            await trio.sleep(self.settings.interval)

    async def _receive(self, sock: trio.socket.SocketType) -> None:
        while True:
            data, sender = await sock.recvfrom(MAX_DATAGRAM)
            try:
                announcement = parse(data)
            except AnnouncementError as error:
                self._bad(sender, error)
                continue
            if self.table is not None and self.table.heard(announcement, trio.current_time()):
                self.publish(self.table.peers())

    def _bad(self, sender: tuple[str, int], error: AnnouncementError) -> None:
        """Log a bad datagram; a sender that keeps sending them is logged once a minute (the
        count says how many came), so a noisy neighbour cannot flood the log."""
        self.bad_datagrams += 1
        now = trio.current_time()
        if now - self._bad_logged.get(sender[0], -BAD_LOG_EVERY) < BAD_LOG_EVERY:
            return
        self._bad_logged[sender[0]] = now
        log.warning(
            "discovery_bad_datagram",
            sender=f"{sender[0]}:{sender[1]}",
            error=str(error),
            count=self.bad_datagrams,
        )

    async def _expire(self) -> None:
        while True:
            await trio.sleep(self.settings.interval / 2)
            if self.table is None:
                continue
            gone = self.table.expire(trio.current_time())
            if gone:
                log.warning("discovery_group_expired", groups=gone)
                self.publish(self.table.peers())


def parse(data: bytes) -> GroupAnnouncement:
    """The announcement in a datagram; :class:`AnnouncementError` saying what is wrong."""
    try:
        decoded = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnouncementError(f"not JSON: {error}") from None
    return GroupAnnouncement.from_dict(decoded)
