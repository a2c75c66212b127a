"""An in-memory reliable-connected queue pair: the verbs semantics the stream relies on.

Used by the host test suite (no RDMA device needed) to run the real stream and credit logic,
trio's stream conformance checks included. It is strict where hardware is: a SEND that finds
no posted receive buffer on the peer is an overrun (on hardware: RNR retries, then a broken
connection), counted in :attr:`MemoryQueuePair.overruns` and failed, so a flow-control bug
shows up as a test failure instead of a hang. Messages larger than the peer's buffer fail the
same way (a local length error on hardware).
"""

from __future__ import annotations

from collections import deque

import trio

from plugmq_transport_rdma.qp import Completion, Op


class MemoryQueuePair:
    """One end of an in-memory pair; create both with :func:`memory_pair`."""

    def __init__(self, buffers: int, buffer_size: int) -> None:
        self.buffers = buffers
        self.buffer_size = buffer_size
        self.registered_bytes = 2 * buffers * buffer_size
        self.disconnected = False
        self.overruns = 0
        self.closed = False
        self.peer: MemoryQueuePair | None = None
        self._send = [bytearray(buffer_size) for _ in range(buffers)]
        self._recv = [bytearray(buffer_size) for _ in range(buffers)]
        self._posted: deque[int] = deque(range(buffers))
        self._completions: deque[Completion] = deque()
        self._changed = trio.Event()
        self._word = 0
        self.credit_writes = 0

    def credit_word(self) -> tuple[int, int]:
        """A fake address and rkey (the peer object is known directly)."""
        return id(self), 0x1234

    def read_credit_word(self) -> int:
        """What the peer last wrote into this side's credit word."""
        return self._word

    def set_peer_credit_word(self, address: int, rkey: int) -> None:
        """Check the HELLO carried this pair's peer word."""
        if self.peer is None or address != id(self.peer):
            raise OSError("HELLO names a credit word that is not the peer's")

    def post_credit_write(self, slot: int, count: int) -> None:
        """Write the peer's word without waking it (RDMA WRITE raises no remote completion)."""
        if self.closed:
            raise OSError("queue pair is closed")
        peer = self.peer
        if peer is None or peer.closed or self.disconnected:
            self._complete(Completion(Op.SEND, False, 0, "retry exceeded (peer gone)"))
            return
        peer._word = count
        self.credit_writes += 1
        self._complete(Completion(Op.SEND, True, 4))

    def write(self, slot: int, data: bytes) -> None:
        """Copy ``data`` into send buffer ``slot``."""
        self._send[slot][: len(data)] = data

    def read(self, slot: int, length: int, offset: int) -> bytes:
        """Copy bytes out of receive buffer ``slot``."""
        return bytes(self._recv[slot][offset : offset + length])

    def post_send(self, slot: int, length: int) -> None:
        """Deliver at once into the peer's oldest posted receive buffer."""
        if self.closed:
            raise OSError("queue pair is closed")
        peer = self.peer
        if peer is None or peer.closed or self.disconnected:
            self._complete(Completion(Op.SEND, False, 0, "retry exceeded (peer gone)"))
            return
        if not peer._posted or length > peer.buffer_size:
            self.overruns += 1
            self._complete(Completion(Op.SEND, False, 0, "receiver not ready (overrun)"))
            return
        target = peer._posted.popleft()
        peer._recv[target][:length] = self._send[slot][:length]
        peer._complete(Completion(Op.RECV, True, length))
        self._complete(Completion(Op.SEND, True, length))

    def post_recv(self, slot: int) -> None:
        """Post receive buffer ``slot``."""
        if self.closed:
            raise OSError("queue pair is closed")
        self._posted.append(slot)

    def poll(self) -> list[Completion]:
        """Every completion so far."""
        done = list(self._completions)
        self._completions.clear()
        return done

    async def wait(self) -> None:
        """Until a completion or a disconnect arrives; ClosedResourceError once closed."""
        if self.closed:
            raise trio.ClosedResourceError("queue pair is closed")
        if self._completions or self.disconnected:
            await trio.lowlevel.checkpoint()
            return
        await self._changed.wait()
        if self.closed:
            raise trio.ClosedResourceError("queue pair is closed")

    def probe(self) -> None:
        """Nothing to do: a vanished peer is noticed at once in memory."""

    def disconnect(self) -> None:
        """The peer learns at once (its connection manager event)."""
        peer = self.peer
        if peer is not None and not peer.disconnected:
            peer.disconnected = True
            peer._wake()

    def close(self) -> None:
        """Disconnect, wake waiters, drop buffers."""
        if self.closed:
            return
        self.disconnect()
        self.closed = True
        self._wake()

    def _complete(self, completion: Completion) -> None:
        self._completions.append(completion)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def memory_pair(
    buffers: int = 8, buffer_size: int = 256, peer_buffers: int | None = None
) -> tuple[MemoryQueuePair, MemoryQueuePair]:
    """Two connected in-memory queue pairs (the second may have a different ring)."""
    a = MemoryQueuePair(buffers, buffer_size)
    b = MemoryQueuePair(peer_buffers or buffers, buffer_size)
    a.peer, b.peer = b, a
    return a, b
