"""Credit-based flow control (sans-IO): a sender never overruns the receiver's posted buffers.

A reliable-connected SEND consumes one receive buffer the peer posted beforehand; with none
posted the hardware retries (RNR) and finally breaks the connection. So each side counts
*credits*: how many of the peer's receive buffers it may still fill (Qpid's rdma protocol did
the same).

* Before the peer's HELLO arrives a side may send exactly one message, its own HELLO (every
  peer posts at least two buffers before it connects). The HELLO gives the peer's ring size.
* A side reposts a receive buffer once the reader has consumed its bytes (so a slow reader
  slows the writer, like a TCP window), and keeps a running count of reposts.
* That count goes back to the peer in two ways: in the header of every message it sends
  anyway, and by an RDMA WRITE into the peer's *credit word* when enough is owed. The WRITE
  consumes none of the peer's receive buffers, so giving credits back never needs a credit:
  the classic deadlock (both sides out of credits, each owing the other) cannot happen, the way
  TCP window updates ride on ACKs that take no window space.
* Counts are cumulative (mod 2**32 on the wire), so a stale or duplicated report is harmless.

``credit = peer_ring - (sent - returned_by_peer)``.
"""

from __future__ import annotations

from plugmq_transport_rdma.framing import Kind

_WRAP = 1 << 32


class CreditError(Exception):
    """The peer broke the credit protocol (returned credits it was never given)."""


class FlowControl:
    """Credit accounting of one connection.

    :param local_buffers: how many receive buffers this side posts (its ring).
    """

    def __init__(self, local_buffers: int) -> None:
        if local_buffers < 2:
            raise ValueError("an RDMA receive ring needs at least 2 buffers")
        self.local_buffers = local_buffers
        self.peer_buffers: int | None = None
        self.sent = 0
        self.returned_by_peer = 0
        self.reposted = 0
        self.announced = 0
        #: Owed credits that make an RDMA WRITE of the credit word worth it.
        self.threshold = max(1, local_buffers // 2)

    @property
    def ready(self) -> bool:
        """True once the peer's HELLO arrived (stream messages may flow)."""
        return self.peer_buffers is not None

    @property
    def credit(self) -> int:
        """Messages that may be sent now."""
        ring = 1 if self.peer_buffers is None else self.peer_buffers
        return ring - (self.sent - self.returned_by_peer)

    @property
    def owed(self) -> int:
        """Reposted receive buffers the peer has not been told about."""
        return self.reposted - self.announced

    def can_send(self, kind: Kind) -> bool:
        """May a message of ``kind`` be sent now?"""
        if kind is Kind.HELLO:
            return self.sent == 0
        return self.ready and self.credit >= 1

    def take(self, kind: Kind) -> int:
        """Spend one credit on a message of ``kind``; return the count its header carries."""
        if not self.can_send(kind):
            raise CreditError(f"no credit to send {kind.name} (credit {self.credit})")
        self.sent += 1
        return self.announce()

    def announce(self) -> int:
        """The repost count to send now (header or credit word); it counts as told."""
        self.announced = self.reposted
        return self.reposted % _WRAP

    def on_hello(self, peer_buffers: int) -> None:
        """The peer's HELLO: its ring size fixes our credit."""
        if self.peer_buffers is not None:
            raise CreditError("second HELLO")
        self.peer_buffers = peer_buffers

    def on_returned(self, count: int) -> None:
        """The peer reports ``count`` (mod 2**32) reposts; older reports are ignored."""
        delta = (count - self.returned_by_peer) % _WRAP
        if delta == 0 or delta >= _WRAP // 2:
            return
        if self.returned_by_peer + delta > self.sent:
            raise CreditError(
                f"peer returned {self.returned_by_peer + delta} buffers; only {self.sent} sent"
            )
        self.returned_by_peer += delta

    def on_repost(self) -> None:
        """A receive buffer was consumed and posted again: one credit is owed to the peer."""
        self.reposted += 1

    def should_announce(self) -> bool:
        """Is an RDMA WRITE of the credit word due?

        With ``threshold <= ring - 1`` a peer can only run out of credits while we hold
        unread data or owe at least ``threshold``: so it never waits on us for nothing.
        """
        return self.ready and self.owed >= self.threshold
