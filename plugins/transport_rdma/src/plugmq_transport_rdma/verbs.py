"""The real queue pair and connection-manager events, over pyverbs (rdma-core 44).

Imported only when RDMA is actually used (the listener and dialer import it lazily).

How nothing blocks the trio loop: pyverbs' blocking calls hold the GIL, and pyverbs 44 does
not expose the file descriptors of a ``CompChannel`` or ``CMEventChannel``. Each one is found
in ``/proc/self/fd`` (the fd that appeared when it was created: ``anon_inode:[infinibandevent]``
or ``/dev/infiniband/rdma_cm``), made non-blocking, and waited for with
``trio.lowlevel.wait_readable``; ``get_cq_event()`` and ``CMEvent()`` are then only called when
they return at once (EAGAIN otherwise). A queue pair waits on an epoll fd holding both its
completion channel and, on the dialing side, its CM channel, so one task wait covers both.

pyverbs 44 quirks handled here (found in the rdma-lab VM):

* ``CMID.close()`` of an accepted connection nulls the listener's shared Context/PD wrappers
  (the next accept then crashes): each accepted connection gets its own "template" CMID,
  bound to an ephemeral port, whose wrappers it may null.
* ``post_send``/``post_recv`` take no work-request id: completions are matched to buffers by
  order (:mod:`.rings`); a length of 0 means "the whole buffer".
* Do not fork a process that has opened a device (its child gets EACCES on every post).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
from collections.abc import Callable

import pyverbs.cm_enums as ce
import pyverbs.enums as e
import structlog
import trio
from pyverbs.cmid import CMID, AddrInfo, CMEvent, CMEventChannel, ConnParam
from pyverbs.cq import CQ, CompChannel
from pyverbs.mr import MR
from pyverbs.pyverbs_error import PyverbsError, PyverbsRDMAError
from pyverbs.qp import QPCap, QPInitAttr

from plugmq_transport_rdma.device import PinError, check_pinnable, pin_error
from plugmq_transport_rdma.qp import Completion, Op

log = structlog.get_logger("plugmq.transport_rdma")

WORD = struct.Struct("!I")
_STATUS = {
    5: "work request flushed (queue pair in error)",
    9: "remote invalid request",
    10: "remote access error",
    12: "transport retry counter exceeded (peer gone)",
    13: "receiver-not-ready retry exceeded",
}
#: CM events that mean the connection is over.
GONE_EVENTS = frozenset(
    {
        ce.RDMA_CM_EVENT_DISCONNECTED,
        ce.RDMA_CM_EVENT_DEVICE_REMOVAL,
        ce.RDMA_CM_EVENT_TIMEWAIT_EXIT,
    }
)


def rdma_error(what: str, error: BaseException) -> OSError:
    """An OSError (the transport contract's error type) for a failed pyverbs call."""
    code = getattr(error, "error_code", 0) or errno.EIO
    return OSError(code, f"{what}: {error}")


def _fds() -> dict[int, str]:
    found = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
    return found


def _new_fd(before: dict[int, str], marker: str) -> int:
    """The fd that appeared since ``before`` and whose link target contains ``marker``."""
    fresh = [fd for fd, target in _fds().items() if marker in target and before.get(fd) != target]
    if len(fresh) != 1:
        raise OSError(errno.EIO, f"cannot find the new {marker} fd in /proc/self/fd: {fresh}")
    flags = fcntl.fcntl(fresh[0], fcntl.F_GETFL)
    fcntl.fcntl(fresh[0], fcntl.F_SETFL, flags | os.O_NONBLOCK)
    return fresh[0]


def _would_block(error: PyverbsError) -> bool:
    return getattr(error, "error_code", None) in (errno.EAGAIN, errno.EWOULDBLOCK)


class EventChannel:
    """A ``CMEventChannel`` whose events are awaited without blocking trio."""

    def __init__(self) -> None:
        before = _fds()
        self.channel = CMEventChannel()
        self.fd = _new_fd(before, "rdma_cm")
        self.closed = False

    def get(self) -> CMEvent | None:
        """The next event if one is queued (the caller must ``close()`` it: that acks it)."""
        try:
            return CMEvent(self.channel)
        except PyverbsRDMAError as error:
            if _would_block(error):
                return None
            raise rdma_error("reading an RDMA CM event", error) from error

    async def next(self) -> CMEvent:
        """Wait for the next event."""
        while True:
            event = self.get()
            if event is not None:
                return event
            await trio.lowlevel.wait_readable(self.fd)

    async def expect(self, wanted: int, what: str) -> None:
        """Wait for event ``wanted``; raise ConnectionRefusedError for any other."""
        event = await self.next()
        kind, name = event.event_type, event.event_str()
        event.close()
        if kind != wanted:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"{what}: {name}")

    def close(self) -> None:
        """Destroy the channel (every CMID on it must be destroyed first)."""
        if not self.closed:
            self.closed = True
            trio.lowlevel.notify_closing(self.fd)
            self.channel.close()


class VerbsQueuePair:
    """A connected RC queue pair with registered send/receive rings and a credit word.

    :param cmid: the connection's CMID (queue pair not created yet).
    :param context: pyverbs Context to create the completion channel and CQ on.
    :param pd: protection domain to register buffers in.
    :param events: the connection's own CM channel (dialing side), watched for disconnects.
    :param owned: CMIDs/channels to destroy after ``cmid`` (the accepting side's template).
    :param pinned: bytes already pinned by this process's other connections (for the error).
    :param shared_events: (channel, pump) of the listener whose channel reports this
        accepted connection's CM events: when it is readable, ``pump()`` handles them.
    """

    def __init__(
        self,
        cmid: CMID,
        context: object,
        pd: object,
        buffers: int,
        buffer_size: int,
        *,
        events: EventChannel | None = None,
        owned: tuple[Callable[[], None], ...] = (),
        pinned: int = 0,
        shared_events: tuple[EventChannel, Callable[[], None]] | None = None,
    ) -> None:
        self.buffers = buffers
        self.buffer_size = buffer_size
        self.registered_bytes = 2 * buffers * buffer_size + WORD.size
        self.disconnected = False
        self._cmid = cmid
        self._events = events
        self._shared = shared_events
        self._owned = owned
        self._closed = False
        self._pending: list[Completion] = []
        self._unacked = 0
        self._peer_word: tuple[int, int] | None = None
        self._mrs: list[MR] = []
        check_pinnable(self.registered_bytes, pinned)
        before = _fds()
        self._channel = CompChannel(context)
        self._channel_fd = _new_fd(before, "infinibandevent")
        self._cq = CQ(context, 2 * buffers + 8, None, self._channel, 0)
        cap = QPCap(max_send_wr=buffers, max_recv_wr=buffers, max_send_sge=1, max_recv_sge=1)
        cmid.create_qp(QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self._cq, rcq=self._cq, cap=cap))
        self._register(pd, pinned)
        for mr in self._recv:
            cmid.post_recv(mr, buffer_size)
        self._cq.req_notify()
        self._epoll = select.epoll()
        self._epoll.register(self._channel_fd, select.EPOLLIN)
        for channel in (events, shared_events[0] if shared_events else None):
            if channel is not None:
                self._epoll.register(channel.fd, select.EPOLLIN)

    def _register(self, pd: object, pinned: int) -> None:
        local = e.IBV_ACCESS_LOCAL_WRITE
        try:
            self._recv = [MR(pd, self.buffer_size, local) for _ in range(self.buffers)]
            self._send = [MR(pd, self.buffer_size, local) for _ in range(self.buffers)]
            self._word = MR(pd, WORD.size, local | e.IBV_ACCESS_REMOTE_WRITE)
        except PyverbsError as error:
            raise pin_error(self.registered_bytes, pinned, error) from error
        self._word.write(WORD.pack(0), WORD.size)
        self._mrs = [*self._recv, *self._send, self._word]

    # -- buffers ---------------------------------------------------------------------------------

    def write(self, slot: int, data: bytes) -> None:
        """Copy ``data`` into send buffer ``slot``."""
        self._send[slot].write(data, len(data))

    def read(self, slot: int, length: int, offset: int) -> bytes:
        """Copy bytes out of receive buffer ``slot``."""
        return self._recv[slot].read(length, offset)

    def credit_word(self) -> tuple[int, int]:
        """Address and rkey of our credit word."""
        return self._word.buf, self._word.rkey

    def read_credit_word(self) -> int:
        """What the peer last wrote into our credit word."""
        return WORD.unpack(self._word.read(WORD.size, 0))[0]

    def set_peer_credit_word(self, address: int, rkey: int) -> None:
        """Where the peer's credit word is."""
        self._peer_word = (address, rkey)

    # -- posting ---------------------------------------------------------------------------------

    def post_send(self, slot: int, length: int) -> None:
        """Post a signalled SEND of the first ``length`` (> 0) bytes of buffer ``slot``."""
        try:
            self._cmid.post_send(self._send[slot], e.IBV_SEND_SIGNALED, length)
        except PyverbsError as error:
            raise rdma_error("post_send", error) from error

    def post_recv(self, slot: int) -> None:
        """Post receive buffer ``slot`` again."""
        try:
            self._cmid.post_recv(self._recv[slot], self.buffer_size)
        except PyverbsError as error:
            raise rdma_error("post_recv", error) from error

    def post_credit_write(self, slot: int, count: int) -> None:
        """RDMA WRITE ``count`` into the peer's credit word."""
        if self._peer_word is None:
            raise OSError(errno.ENOTCONN, "peer credit word unknown before its HELLO")
        mr = self._send[slot]
        mr.write(WORD.pack(count), WORD.size)
        address, rkey = self._peer_word
        try:
            self._cmid.post_write(mr, WORD.size, address, rkey, e.IBV_SEND_SIGNALED)
        except PyverbsError as error:
            raise rdma_error("post_write", error) from error

    # -- completions -----------------------------------------------------------------------------

    def poll(self) -> list[Completion]:
        """Every completion available now."""
        done, self._pending = self._pending, []
        while True:
            count, wcs = self._cq.poll(32)
            done.extend(_completion(wc) for wc in wcs[:count])
            if count < 32:
                return done

    async def wait(self) -> None:
        """Until completions or a CM event arrive (completion channel and CM fds, via epoll)."""
        if self._closed:
            raise trio.ClosedResourceError("queue pair is closed")
        self._drain_channels()
        self._cq.req_notify()
        # A completion that arrived before req_notify() raises no event: look once more.
        # (poll() hands over and resets _pending, so assign its result, never extend.)
        self._pending = self.poll()
        if self._pending or self.disconnected:
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.wait_readable(self._epoll.fileno())
        self._drain_channels()

    def _drain_channels(self) -> None:
        while True:
            try:
                self._channel.get_cq_event(self._cq)
            except PyverbsRDMAError as error:
                if not _would_block(error):
                    raise rdma_error("get_cq_event", error) from error
                break
            self._unacked += 1
        if self._unacked:
            self._cq.ack_events(self._unacked)
            self._unacked = 0
        self._drain_cm_events()

    def _drain_cm_events(self) -> None:
        if self._shared is not None:
            self._shared[1]()
        while self._events is not None and (event := self._events.get()) is not None:
            if event.event_type in GONE_EVENTS:
                self.disconnected = True
            event.close()

    def probe(self) -> None:
        """Nothing beyond the stream's credit write."""

    # -- teardown --------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Send DREQ (or answer the peer's) and move the queue pair to error."""
        try:
            self._cmid.disconnect()
        except PyverbsError as error:
            log.debug("rdma_disconnect_failed", error=str(error))

    def close(self) -> None:
        """Destroy QP and CMID, deregister buffers, then CQ, channels and owned objects."""
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._epoll.fileno())
        self._epoll.close()
        self._shared = None
        steps: list[Callable[[], object]] = [self._cmid.close]
        steps += [mr.close for mr in self._mrs]
        steps += [self._ack_all, self._cq.close, self._channel.close, *self._owned]
        if self._events is not None:
            steps.append(self._events.close)
        for step in steps:
            try:
                step()
            except (PyverbsError, OSError) as error:
                log.warning(
                    "rdma_teardown_failed",
                    step=getattr(step, "__qualname__", step),
                    error=str(error),
                )

    def _ack_all(self) -> None:
        # Unacknowledged completion events make ibv_destroy_cq() hang: ack what is queued.
        try:
            self._drain_channels()
        except OSError as error:
            log.debug("rdma_teardown_drain_failed", error=str(error))


def _completion(wc: object) -> Completion:
    status = wc.status  # type: ignore[attr-defined]
    if status != e.IBV_WC_SUCCESS:
        return Completion(Op.SEND, False, 0, _STATUS.get(status, f"status {status}"))
    op = Op.RECV if wc.opcode & e.IBV_WC_RECV else Op.SEND  # type: ignore[attr-defined]
    return Completion(op, True, wc.byte_len)  # type: ignore[attr-defined]


__all__ = [
    "CMID",
    "AddrInfo",
    "ConnParam",
    "EventChannel",
    "PinError",
    "PyverbsError",
    "VerbsQueuePair",
    "ce",
    "rdma_error",
]
