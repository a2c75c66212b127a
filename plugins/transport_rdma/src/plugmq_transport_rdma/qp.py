"""The queue-pair interface the stream runs on: registered buffers, posts and completions.

:class:`plugmq_transport_rdma.stream.RdmaStream` holds all the protocol logic and only talks
to this interface, so the same code runs over real verbs (:mod:`.verbs`) and over the
in-memory pair of :mod:`.memory` that the host test suite uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Op(Enum):
    """Which queue a completion came from."""

    SEND = "send"
    RECV = "recv"


@dataclass(frozen=True, slots=True)
class Completion:
    """One work completion. ``op`` is meaningless when ``ok`` is False (flushed or failed)."""

    op: Op
    ok: bool
    length: int = 0
    detail: str = ""


class QueuePair(Protocol):
    """A connected reliable queue pair with ``buffers`` send and receive buffers of ``buffer_size``.

    Every receive buffer is posted when the pair is created, before it connects, so the peer
    may send its first message at once.
    """

    buffers: int
    buffer_size: int
    #: Bytes of memory registered (pinned) for this pair.
    registered_bytes: int
    #: True once the connection manager reported the peer gone.
    disconnected: bool

    def write(self, slot: int, data: bytes) -> None:
        """Copy ``data`` into send buffer ``slot``."""
        ...

    def read(self, slot: int, length: int, offset: int) -> bytes:
        """Copy ``length`` bytes at ``offset`` out of receive buffer ``slot``."""
        ...

    def post_send(self, slot: int, length: int) -> None:
        """Send the first ``length`` bytes of send buffer ``slot`` (signalled)."""
        ...

    def post_recv(self, slot: int) -> None:
        """Post receive buffer ``slot`` again."""
        ...

    def credit_word(self) -> tuple[int, int]:
        """``(address, rkey)`` of this side's credit word, for the HELLO."""
        ...

    def read_credit_word(self) -> int:
        """The repost count the peer last wrote into our credit word (u32)."""
        ...

    def set_peer_credit_word(self, address: int, rkey: int) -> None:
        """Where the peer's credit word is (from its HELLO)."""
        ...

    def post_credit_write(self, slot: int, count: int) -> None:
        """RDMA WRITE ``count`` (u32) from send buffer ``slot`` into the peer's credit word.

        It consumes no receive buffer on the peer and raises no completion there; it gives a
        send completion here like a SEND.
        """
        ...

    def poll(self) -> list[Completion]:
        """Completions available now, oldest first (never blocks)."""
        ...

    async def wait(self) -> None:
        """Return when :meth:`poll` may have something new or :attr:`disconnected` changed."""
        ...

    def probe(self) -> None:
        """Hint that the peer may be gone (used by the listener; may do nothing)."""
        ...

    def disconnect(self) -> None:
        """Start tearing the connection down (the peer sees it go)."""
        ...

    def close(self) -> None:
        """Wake any :meth:`wait` with ``trio.ClosedResourceError`` and free every resource."""
        ...
