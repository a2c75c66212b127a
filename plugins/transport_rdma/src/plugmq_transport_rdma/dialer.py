"""The client side: ``amqp+rdma://host:port`` URLs open an :class:`RdmaStream`."""

from __future__ import annotations

import errno
import socket

import trio

from plugmq_transport_rdma.settings import RETRY, RingSettings
from plugmq_transport_rdma.stream import RdmaStream

#: Address and route resolution timeout of the connection manager (milliseconds).
RESOLVE_MS = 2000


class RdmaDialer:
    """Opens RDMA connections (the ``plugmq_dialer`` hook returns one for ``amqp+rdma``).

    :param ring: buffers per connection (both sides may differ; HELLO reconciles them).
    :param timeout: seconds for address/route resolution, connect and the HELLO exchange.
    """

    def __init__(self, ring: RingSettings | None = None, timeout: float = 15.0) -> None:
        self.ring = ring or RingSettings()
        self.timeout = timeout
        self.pinned_bytes = 0

    async def dial(self, host: str, port: int) -> RdmaStream:
        """Connect; raise OSError (with the reason) when RDMA or the peer is unreachable."""
        from plugmq_transport_rdma import device

        availability = device.probe()
        if not availability.available:
            raise OSError(errno.ENODEV, f"RDMA is unavailable: {availability.reason}")
        address = await _numeric(host, port)
        try:
            with trio.fail_after(self.timeout):
                return await self._connect(address, port)
        except trio.TooSlowError:
            raise TimeoutError(
                errno.ETIMEDOUT, f"rdma://{host}:{port}: no answer in {self.timeout} s"
            ) from None

    async def _connect(self, address: str, port: int) -> RdmaStream:
        from plugmq_transport_rdma import verbs

        events = verbs.EventChannel()
        cmid = verbs.CMID(creator=events.channel, port_space=verbs.ce.RDMA_PS_TCP)
        qp = None
        try:
            target = verbs.AddrInfo(
                dst=address, dst_service=str(port), port_space=verbs.ce.RDMA_PS_TCP
            )
            cmid.resolve_addr(target, RESOLVE_MS)
            await events.expect(verbs.ce.RDMA_CM_EVENT_ADDR_RESOLVED, f"resolving {address}")
            cmid.resolve_route(RESOLVE_MS)
            await events.expect(verbs.ce.RDMA_CM_EVENT_ROUTE_RESOLVED, f"route to {address}")
            qp = verbs.VerbsQueuePair(
                cmid,
                cmid.context,
                cmid.pd,
                self.ring.buffers,
                self.ring.buffer_size,
                events=events,
                pinned=self.pinned_bytes,
            )
            cmid.connect(verbs.ConnParam(retry=RETRY))
            await events.expect(
                verbs.ce.RDMA_CM_EVENT_ESTABLISHED, f"rdma://{address}:{port} refused"
            )
        except BaseException as error:
            _abandon(qp, cmid, events)
            if isinstance(error, verbs.PyverbsError):
                raise verbs.rdma_error(f"rdma://{address}:{port}", error) from error
            raise
        return await self._handshake(qp, address, port)

    async def _handshake(self, qp: object, address: str, port: int) -> RdmaStream:
        self.pinned_bytes += qp.registered_bytes  # type: ignore[attr-defined]
        stream = RdmaStream(
            qp,  # type: ignore[arg-type]
            initiator=True,
            peer=f"rdma://{address}:{port}",
            on_close=self._forget,
        )
        try:
            await stream.wait_established()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    def _forget(self, stream: RdmaStream) -> None:
        self.pinned_bytes -= stream.registered_bytes


async def _numeric(host: str, port: int) -> str:
    """Resolve ``host`` in a thread (rdma_getaddrinfo would block the loop on DNS)."""
    infos = await trio.socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)
    if not infos:
        raise OSError(errno.EHOSTUNREACH, f"{host} has no IPv4 address")
    return str(infos[0][4][0])


def _abandon(qp: object, cmid: object, events: object) -> None:
    if qp is not None:
        qp.close()  # type: ignore[attr-defined]
        return
    cmid.close()  # type: ignore[attr-defined]
    events.close()  # type: ignore[attr-defined]
