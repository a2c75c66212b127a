"""The RDMA connection as a ``trio.abc.HalfCloseableStream``.

Completions are awaited without blocking the trio loop: :meth:`QueuePair.wait` waits for the
completion channel's file descriptor with ``trio.lowlevel.wait_readable``. Several tasks may
wait at once (a reader, a writer); one of them drives the queue pair and the others wait for
the progress it makes, because trio lets only one task wait on a file descriptor.

Errors follow trio's stream contract: ``ClosedResourceError`` after this side closed,
``BrokenResourceError`` once the peer closed or vanished or the queue pair failed (the reason
is in the message), ``BusyResourceError`` for two concurrent senders or receivers.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog
import trio

from plugmq_transport_rdma.credit import CreditError, FlowControl
from plugmq_transport_rdma.framing import (
    HEADER_SIZE,
    FramingError,
    Kind,
    decode_header,
    decode_hello,
    encode_header,
    encode_hello,
    split,
)
from plugmq_transport_rdma.qp import Op, QueuePair
from plugmq_transport_rdma.rings import RecvRing, RingError, SendRing

log = structlog.get_logger("plugmq.transport_rdma")

#: ``receive_some()`` without ``max_bytes`` returns at most this much.
DEFAULT_RECEIVE = 256 * 1024
#: How long a graceful ``aclose`` waits for its last sends to be acknowledged.
CLOSE_TIMEOUT = 2.0
#: Pauses between looks at the credit word while out of credits (seconds).
POLL_MIN = 0.0002
POLL_MAX = 0.005


@dataclass(slots=True)
class _Segment:
    """Received stream bytes still in a receive buffer."""

    slot: int
    offset: int
    remaining: int


class _Conflict:
    """Raise ``BusyResourceError`` when two tasks use one direction at once."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what} this stream")
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self._held = False


class RdmaStream(trio.abc.HalfCloseableStream):
    """An AMQP byte stream over one RDMA queue pair.

    :param qp: the connected queue pair (receive buffers already posted).
    :param initiator: True on the dialing side, which sends its HELLO first; the accepting
        side answers only after the dialer's HELLO arrived, which also proves the dialer's
        queue pair is ready to receive.
    :param peer: printable peer name for logs (the broker reads ``stream.peer``).
    :param on_close: called once when the stream is torn down (the listener's bookkeeping).
    """

    def __init__(
        self,
        qp: QueuePair,
        *,
        initiator: bool,
        peer: str = "rdma",
        on_close: Callable[[RdmaStream], None] | None = None,
    ) -> None:
        self.peer = peer
        self._qp = qp
        self._initiator = initiator
        self._on_close = on_close
        self._flow = FlowControl(qp.buffers)
        self._sends = SendRing(qp.buffers)
        self._recvs = RecvRing(qp.buffers)
        self._ready: deque[_Segment] = deque()
        self._peer_buffer_size = qp.buffer_size
        self._eof_received = False
        self._peer_closed = False
        self._eof_sent = False
        self._closed = False
        self._torn_down = False
        self._broken: str | None = None
        self._driving = False
        self._progress = trio.Event()
        self._sent_messages = 0
        self._received_messages = 0
        self._send_conflict = _Conflict("sending on")
        self._receive_conflict = _Conflict("receiving on")
        if initiator:
            self._post(Kind.HELLO, self._hello())

    # -- public state ----------------------------------------------------------------------------

    @property
    def registered_bytes(self) -> int:
        """Pinned memory of this connection (send and receive rings)."""
        return self._qp.registered_bytes

    @property
    def broken_reason(self) -> str | None:
        """Why the stream broke, or None."""
        return self._broken

    def credits(self) -> tuple[int, int]:
        """``(credit, owed)``: sends allowed now, and credits owed to the peer (for tests)."""
        return self._flow.credit, self._flow.owed

    async def wait_established(self) -> None:
        """Wait for the peer's HELLO (the dialer does, so ``dial`` returns a ready stream)."""
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        await self._wait_until(lambda: self._flow.ready or self._broken is not None, sending=False)
        if self._broken is not None:
            raise trio.BrokenResourceError(self._broken)

    # -- trio.abc.Stream -------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte, split over as many buffers as needed; waits for credits."""
        with self._send_conflict:
            self._check_send()
            await trio.lowlevel.checkpoint()
            view = memoryview(data).cast("B")
            for chunk, flags in split(view, self._peer_buffer_size_now()):
                await self._wait_until(lambda: self._can_send(Kind.DATA), sending=True)
                self._post(Kind.DATA, chunk, flags)

    async def wait_send_all_might_not_block(self) -> None:
        """Return once a credit and a send buffer are free (or the stream is unusable)."""
        with self._send_conflict:
            self._check_send()
            await trio.lowlevel.checkpoint()
            try:
                await self._wait_until(lambda: self._can_send(Kind.DATA), sending=True)
            except trio.BrokenResourceError:
                return

    async def send_eof(self) -> None:
        """Tell the peer no more data follows; receiving still works."""
        with self._send_conflict:
            if self._closed:
                raise trio.ClosedResourceError("stream is closed")
            await trio.lowlevel.checkpoint()
            if self._eof_sent:
                return
            await self._wait_until(lambda: self._can_send(Kind.FIN), sending=True)
            self._post(Kind.FIN, b"")
            self._eof_sent = True

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` received bytes; ``b""`` once the peer sent EOF or closed."""
        limit = DEFAULT_RECEIVE if max_bytes is None else operator.index(max_bytes)
        if limit < 1:
            raise ValueError("max_bytes must be >= 1")
        with self._receive_conflict:
            if self._closed:
                raise trio.ClosedResourceError("stream is closed")
            await trio.lowlevel.checkpoint()
            await self._wait_until(self._readable, sending=False)
            if self._ready:
                return self._take(limit)
            if self._eof_received:
                return b""
            raise trio.BrokenResourceError(self._broken)

    async def aclose(self) -> None:
        """Send CLOSE, wait (bounded) until every send is acknowledged, then tear down.

        CLOSE is posted before the first checkpoint, so even a cancelled ``aclose`` (as in
        ``trio.aclose_forcefully``) usually tells the peer; if it does not get out, the
        peer learns from the connection manager.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            self._process()
            if self._broken is None and not self._peer_closed and self._can_send(Kind.CLOSE):
                self._post(Kind.CLOSE, b"")
            await trio.lowlevel.checkpoint()
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self._drain_sends()
        finally:
            self._teardown()

    # -- waiting and progress --------------------------------------------------------------------

    async def _wait_until(
        self, condition: Callable[[], bool], *, sending: bool, closing: bool = False
    ) -> None:
        poll = POLL_MIN
        while True:
            self._process()
            if self._closed and not closing:
                raise trio.ClosedResourceError("stream is closed")
            if sending:
                self._check_send()
            if condition():
                return
            # Returned credits may arrive by RDMA WRITE, which wakes nothing here: while
            # waiting for credits, look at the credit word again after a short, growing pause.
            waiting_for_credit = sending and self._flow.ready and self._flow.credit < 1
            await self._wait_progress(poll if waiting_for_credit else None)
            poll = min(poll * 2, POLL_MAX)

    async def _wait_progress(self, timeout: float | None) -> None:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._drive_or_follow()

    async def _drive_or_follow(self) -> None:
        if self._driving:
            await self._progress.wait()
            return
        self._driving = True
        try:
            await self._qp.wait()
        except trio.ClosedResourceError:
            if not self._closed:
                raise
        finally:
            self._driving = False
            self._progress.set()
            self._progress = trio.Event()

    def _readable(self) -> bool:
        return bool(self._ready) or self._eof_received or self._broken is not None

    def _can_send(self, kind: Kind) -> bool:
        return self._sends.free() > 0 and self._flow.can_send(kind)

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called: sending is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError(self._broken)
        if self._peer_closed:
            self._broken = "peer closed the connection"
            raise trio.BrokenResourceError(self._broken)

    def _peer_buffer_size_now(self) -> int:
        return min(self._qp.buffer_size, self._peer_buffer_size)

    # -- completions -----------------------------------------------------------------------------

    def _process(self) -> None:
        """Digest every completion available now (never blocks)."""
        if self._torn_down:
            return
        if self._flow.ready and self._broken is None:
            self._on_returned(self._qp.read_credit_word())
        for completion in self._qp.poll():
            if self._broken is not None:
                continue
            if not completion.ok:
                self._fail(f"RDMA operation failed: {completion.detail}")
            elif completion.op is Op.SEND:
                self._sends.complete()
            else:
                self._on_message(self._recvs.complete(), completion.length)
        if self._qp.disconnected and self._broken is None and not self._peer_closed:
            self._fail("peer disconnected")
        self._return_credit()

    def _on_message(self, slot: int, length: int) -> None:
        try:
            header = decode_header(self._qp.read(slot, HEADER_SIZE, 0), length)
            expected = self._received_messages & 0xFFFF
            if header.sequence != expected:
                raise FramingError(
                    f"message {header.sequence} arrived where {expected} was due "
                    f"(buffer {slot}, {length} bytes): lost or overwritten buffer"
                )
            self._received_messages += 1
            if self._flow.ready:
                self._flow.on_returned(header.returned)
            self._dispatch(slot, header.kind, header.length)
        except (FramingError, CreditError, RingError) as error:
            self._fail(f"protocol error from peer: {error}")

    def _dispatch(self, slot: int, kind: Kind, length: int) -> None:
        if kind is not Kind.HELLO and not self._flow.ready:
            raise FramingError(f"{kind.name} before HELLO")
        if kind is Kind.DATA and length:
            self._ready.append(_Segment(slot, HEADER_SIZE, length))
            return
        if kind is Kind.HELLO:
            self._on_hello(self._qp.read(slot, length, HEADER_SIZE))
        elif kind is Kind.FIN:
            self._eof_received = True
        elif kind is Kind.CLOSE:
            self._eof_received = self._peer_closed = True
        self._repost(slot)

    def _on_hello(self, payload: bytes) -> None:
        hello = decode_hello(payload)
        self._flow.on_hello(hello.buffers)
        self._peer_buffer_size = hello.buffer_size
        self._qp.set_peer_credit_word(hello.credit_addr, hello.credit_rkey)
        if not self._initiator:
            self._post(Kind.HELLO, self._hello())

    def _hello(self) -> bytes:
        return encode_hello(self._qp.buffers, self._qp.buffer_size, *self._qp.credit_word())

    def _on_returned(self, count: int) -> None:
        try:
            self._flow.on_returned(count)
        except CreditError as error:
            self._fail(f"protocol error from peer: {error}")

    def _repost(self, slot: int) -> None:
        if self._torn_down:
            return
        try:
            self._qp.post_recv(slot)
        except OSError as error:
            self._fail(f"cannot post a receive buffer: {error}")
            return
        self._recvs.repost(slot)
        self._flow.on_repost()

    def _return_credit(self, force: bool = False) -> None:
        if self._broken is not None or self._torn_down or not self._sends.free():
            return
        if self._flow.should_announce() or (force and self._flow.ready):
            slot = self._sends.acquire()
            try:
                self._qp.post_credit_write(slot, self._flow.announce())
            except OSError as error:
                self._fail(f"cannot post a credit write: {error}")

    def probe(self) -> None:
        """Write the credit word again: if the peer vanished, that write fails.

        The listener calls this when the connection manager reports that *some* connection
        went away (pyverbs 44 does not say which one). It needs no credit.
        """
        self._return_credit(force=True)
        self._qp.probe()

    # -- sending ---------------------------------------------------------------------------------

    def _post(self, kind: Kind, payload: bytes | memoryview, flags: int = 0) -> None:
        slot = self._sends.acquire()
        returned = self._flow.take(kind)
        sequence = self._sent_messages
        self._sent_messages += 1
        message = encode_header(kind, returned, len(payload), flags, sequence) + bytes(payload)
        try:
            self._qp.write(slot, message)
            self._qp.post_send(slot, len(message))
        except OSError as error:
            self._fail(f"cannot post a send: {error}")

    def _take(self, limit: int) -> bytes:
        pieces: list[bytes] = []
        while self._ready and limit:
            segment = self._ready[0]
            count = min(limit, segment.remaining)
            pieces.append(self._qp.read(segment.slot, count, segment.offset))
            segment.offset += count
            segment.remaining -= count
            limit -= count
            if not segment.remaining:
                self._ready.popleft()
                self._repost(segment.slot)
        self._return_credit()
        return b"".join(pieces)

    # -- closing ---------------------------------------------------------------------------------

    async def _drain_sends(self) -> None:
        # A queue pair destroyed with sends in flight may drop them (and the peer's last
        # completion can hang): wait until the peer's hardware acknowledged them all.
        await self._wait_until(
            lambda: self._broken is not None or not self._sends.in_flight(),
            sending=False,
            closing=True,
        )

    def _fail(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
            log.info("rdma_stream_broken", peer=self.peer, reason=reason)

    def _teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        self._progress.set()
        try:
            self._qp.disconnect()
        finally:
            self._qp.close()
            if self._on_close is not None:
                self._on_close(self)
