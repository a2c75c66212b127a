"""The broker side: an RDMA CM listener whose ``accept()`` returns :class:`RdmaStream` objects."""

from __future__ import annotations

import errno
import itertools
import random
from collections import deque
from collections.abc import Sequence

import structlog
import trio

from plugmq_transport_rdma.settings import RETRY, RingSettings
from plugmq_transport_rdma.stream import RdmaStream

log = structlog.get_logger("plugmq.transport_rdma")

#: Ports tried, at random, for ``--rdma-port 0`` (pyverbs 44 cannot report an ephemeral port).
EPHEMERAL_PORTS = range(20000, 61000)


class RdmaListenerFactory:
    """Opens the RDMA listener (``--rdma-interface``, ``--rdma-port``)."""

    name = "rdma"

    def __init__(self, interface: str, port: int, ring: RingSettings, backlog: int = 128) -> None:
        self.interface = interface
        self.port = port
        self.ring = ring
        self.backlog = backlog

    async def open(self) -> Sequence[RdmaListener]:
        """Bind and listen; raise OSError naming the address when that fails."""
        from plugmq_transport_rdma import device

        address = self.interface or device.default_address()
        if not address:
            raise OSError(
                errno.EADDRNOTAVAIL, "no IPv4 address on an RDMA port: set --rdma-interface"
            )
        listener = RdmaListener.bind(address, self.port, self.ring, self.backlog)
        log.info(
            "rdma_listening",
            address=f"rdma://{address}:{listener.port}",
            buffers=self.ring.buffers,
            buffer_size=self.ring.buffer_size,
            pinned_per_connection=self.ring.registered_bytes,
        )
        return [listener]

    def describe(self, listener: trio.abc.Listener[trio.abc.Stream]) -> str:
        """``rdma://address:port``."""
        assert isinstance(listener, RdmaListener)
        return f"rdma://{listener.address}:{listener.port}"


class RdmaListener(trio.abc.Listener[RdmaStream]):
    """A listening CMID on its own event channel; accepted connections report there too."""

    def __init__(self, address: str, port: int, ring: RingSettings, events: object, cmid: object):
        self.address = address
        self.port = port
        self.ring = ring
        self._events = events
        self._cmid = cmid
        self._streams: set[RdmaStream] = set()
        self._numbers = itertools.count(1)
        self._closed = False
        self._accepted: deque[RdmaStream] = deque()
        self.pinned_bytes = 0

    @classmethod
    def bind(cls, address: str, port: int, ring: RingSettings, backlog: int) -> RdmaListener:
        """Listen on ``address:port`` (``port`` 0: a free one picked at random)."""
        from plugmq_transport_rdma import verbs

        events = verbs.EventChannel()
        candidates = random.sample(EPHEMERAL_PORTS, 50) if port == 0 else [port]
        for candidate in candidates:
            cmid = verbs.CMID(creator=events.channel, port_space=verbs.ce.RDMA_PS_TCP)
            try:
                cmid.bind_addr(_passive(address, candidate))
                cmid.listen(backlog)
            except verbs.PyverbsError as error:
                cmid.close()
                if getattr(error, "error_code", None) == errno.EADDRINUSE and port == 0:
                    continue
                events.close()
                where = f"cannot listen on rdma://{address}:{candidate}"
                raise verbs.rdma_error(where, error) from error
            return cls(address, candidate, ring, events, cmid)
        events.close()
        raise OSError(errno.EADDRINUSE, f"no free RDMA port found on {address}")

    async def accept(self) -> RdmaStream:
        """The next connection."""
        while True:
            if self._closed:
                raise trio.ClosedResourceError("listener is closed")
            self.pump()
            if self._accepted:
                return self._accepted.popleft()
            await trio.lowlevel.wait_readable(self._events.fd)  # type: ignore[attr-defined]

    def pump(self) -> None:
        """Handle every queued CM event now (never blocks).

        Called by :meth:`accept` and by every accepted connection's queue pair when the
        channel is readable, so a peer's disconnect is seen even while nobody accepts.
        """
        from plugmq_transport_rdma import verbs

        if self._events.closed:  # type: ignore[attr-defined]
            return
        while (event := self._events.get()) is not None:  # type: ignore[attr-defined]
            kind = event.event_type
            if kind == verbs.ce.RDMA_CM_EVENT_CONNECT_REQUEST:
                stream = self._accept_request(event)
                if stream is not None:
                    self._accepted.append(stream)
                continue
            event.close()
            if kind in verbs.GONE_EVENTS:
                self._probe_all()

    def _probe_all(self) -> None:
        # pyverbs 44 cannot say which connection a DISCONNECTED event is for: probe them all;
        # the vanished peer's probe fails (after the RC retry timeout) and breaks its stream.
        for stream in list(self._streams):
            stream.probe()

    def _accept_request(self, event: object) -> RdmaStream | None:
        from plugmq_transport_rdma import verbs

        number = next(self._numbers)
        peer = f"rdma://{self.address}:{self.port}#{number}"
        template = verbs.CMID(creator=self._events.channel, port_space=verbs.ce.RDMA_PS_TCP)  # type: ignore[attr-defined]
        try:
            template.bind_addr(_passive(self.address, 0))
            cmid = verbs.CMID(creator=event, listen_id=template)
        finally:
            event.close()  # type: ignore[attr-defined]
        try:
            qp = verbs.VerbsQueuePair(
                cmid,
                template.context,
                template.pd,
                self.ring.buffers,
                self.ring.buffer_size,
                owned=(template.close,),
                pinned=self.pinned_bytes,
                shared_events=(self._events, self.pump),
            )
            cmid.accept(verbs.ConnParam(retry=RETRY))
        except (OSError, verbs.PyverbsError) as error:
            log.error("rdma_connection_refused", peer=peer, reason=str(error))
            _reject(cmid, template)
            return None
        stream = RdmaStream(qp, initiator=False, peer=peer, on_close=self._forget)
        self._streams.add(stream)
        self.pinned_bytes += stream.registered_bytes
        log.info(
            "rdma_connection_accepted",
            peer=peer,
            pinned=stream.registered_bytes,
            pinned_total=self.pinned_bytes,
        )
        return stream

    def _forget(self, stream: RdmaStream) -> None:
        self._streams.discard(stream)
        self.pinned_bytes -= stream.registered_bytes
        if self._closed and not self._streams:
            self._events.close()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Stop listening. The event channel lives on until the last connection is closed."""
        if not self._closed:
            self._closed = True
            self._cmid.close()  # type: ignore[attr-defined]
            if not self._streams:
                self._events.close()  # type: ignore[attr-defined]
        await trio.lowlevel.checkpoint()


def _passive(address: str, port: int) -> object:
    from plugmq_transport_rdma import verbs

    return verbs.AddrInfo(
        src=address,
        src_service=str(port),
        port_space=verbs.ce.RDMA_PS_TCP,
        flags=verbs.ce.RAI_PASSIVE,
    )


def _reject(cmid: object, template: object) -> None:
    from plugmq_transport_rdma import verbs

    for step in (cmid.reject, cmid.close, template.close):  # type: ignore[attr-defined]
        try:
            step()
        except verbs.PyverbsError as error:
            log.debug("rdma_reject_step_failed", error=str(error))
