"""A client connection: negotiation, frame dispatch, batched output, heartbeats, errors.

One reader task parses everything a read returned and runs the handlers synchronously (a
*batch*); their output, for this connection or any other, accumulates in per-connection
buffers. When the stream offers :class:`plugmq.transport.DirectStream` (TCP does), each buffer
filled during a batch is sent at its end with one non-blocking send, from the reader's task;
what the socket does not take, and output made outside a batch (timers, the journal), goes to
the connection's writer task, the only one that awaits ``send_all``. A busy connection
therefore costs one wake-up per read and at most one per write, not per frame, and an idle
one answers a read without a task switch. When the output buffer is above a high-water mark
the connection stops taking deliveries (consumers are "not ready") and stops reading until the
peer has read enough for deliveries to resume, so a peer that does not read cannot make the
broker grow without bound (not even by publishing into queues that only it consumes).

:meth:`Connection._fail` is the one place where exceptions become channel.close or
connection.close frames.
"""

from __future__ import annotations

import ipaddress
import itertools
import threading
from typing import TYPE_CHECKING, Any

import structlog
import trio
from pamqp import commands

from plugmq import __version__
from plugmq.admission import ConnectionInfo
from plugmq.amqp import constants as C
from plugmq.amqp import methods as M
from plugmq.amqp.errors import (
    AMQPError,
    ChannelNotOpen,
    CommandInvalid,
    ConnectionAccessRefused,
    ConnectionForced,
    InternalError,
    NotAllowed,
    UnexpectedFrame,
)
from plugmq.amqp.frames import HEARTBEAT_FRAME, FrameParser
from plugmq.broker.channel import Channel
from plugmq.transport import DirectStream

if TYPE_CHECKING:
    from plugmq.access import Grant
    from plugmq.auth import Mechanism
    from plugmq.broker.broker import Broker
    from plugmq.broker.vhost import VHost

log = structlog.get_logger("plugmq.connection")

#: Stop delivering to this connection's consumers above this many unsent bytes.
DELIVERY_HIGH_WATER = 1 << 20
#: Stop reading from the peer above this many unsent bytes (it is not reading ours).
READ_STOP_WATER = 8 << 20
#: Seconds to finish the handshake (as RabbitMQ's handshake_timeout).
HANDSHAKE_TIMEOUT = 10.0
#: Seconds to wait for connection.close-ok after sending connection.close.
CLOSE_TIMEOUT = 2.0
#: Seconds to wait, once the close handshake is done, for the peer to close its socket.
LINGER_TIMEOUT = 2.0
#: Bytes asked of the stream per read.
RECEIVE_SIZE = 65536
#: A read of at least this many bytes suggests more is waiting: read again before waiting.
BUSY_READ = RECEIVE_SIZE // 4

_ids = itertools.count(1)

_START_OK = commands.Connection.StartOk.index  # type: ignore[attr-defined]
_TUNE_OK = commands.Connection.TuneOk.index  # type: ignore[attr-defined]
_OPEN = commands.Connection.Open.index  # type: ignore[attr-defined]
_CLOSE = commands.Connection.Close.index  # type: ignore[attr-defined]
_CLOSE_OK = commands.Connection.CloseOk.index  # type: ignore[attr-defined]
_CHANNEL_OPEN = commands.Channel.Open.index  # type: ignore[attr-defined]
_UPDATE_SECRET = commands.Connection.UpdateSecret.index  # type: ignore[attr-defined]


class _Closed(Exception):
    """Internal: the connection is finished (closed cleanly or dropped)."""


class _Batch(threading.local):
    """The connections given output while a reader runs the handlers of one read.

    A batch is synchronous (no checkpoint between its start and end), so at most one is open
    per thread; :func:`_end_batch` sends every listed connection's output at once.
    """

    #: True between :func:`_start_batch` and :func:`_end_batch`.
    active = False

    def __init__(self) -> None:
        self.pending: list[Connection] = []


_batch = _Batch()


def _start_batch() -> None:
    _batch.active = True


def _end_batch() -> None:
    """Close the batch: each connection that got output sends it now (non-blocking)."""
    _batch.active = False
    pending = _batch.pending
    if pending:
        _batch.pending = []
        for connection in pending:
            connection._send_now()


class Connection:
    """One AMQP connection on a transport stream."""

    def __init__(self, broker: Broker, stream: trio.abc.Stream, peer: str) -> None:
        self.id = next(_ids)
        self.broker = broker
        self.stream = stream
        self.peer = peer
        self.log = log.bind(conn=self.id, peer=peer)
        self.parser = FrameParser(C.FRAME_MIN_SIZE)
        self.frame_max = C.FRAME_MIN_SIZE
        self.channel_max = broker.channel_max
        self.heartbeat = 0
        self.vhost: VHost = None  # type: ignore[assignment]
        self.user = ""
        #: The user's permissions in the vhost, set by connection.open.
        self.grant: Grant = None  # type: ignore[assignment]
        self.client_properties: dict[str, Any] = {}
        self.consumer_cancel_notify = False
        self.supports_blocked = False
        #: Set on the first basic.publish: only publishers are blocked by the memory alarm.
        self.is_publisher = False
        self.channels: dict[int, Channel] = {}
        self._state = "start"
        self._out: list[bytes] = []
        self._out_size = 0
        self._sending = False
        #: The stream's non-blocking side (None: everything goes through send_all and
        #: receive_some). Sending directly stops at the first error; the writer reports it.
        direct = stream if isinstance(stream, DirectStream) else None
        self._direct_out: DirectStream | None = direct
        self._direct_in: DirectStream | None = direct
        #: Listed in the open batch (its output is sent when the batch ends).
        self._in_batch = False
        #: The last read was big: read again before waiting for the stream to be readable.
        self._busy_read = False
        self._wake = trio.Event()
        self._drained = trio.Event()
        self._closing = False
        #: A close handshake ended the conversation: let the peer close first (see _linger).
        self._graceful_end = False
        self._released = False
        self._pending_close: AMQPError | None = None
        self._reading_paused = False
        self._read_scope = trio.CancelScope()
        self._finished = trio.Event()
        self._close_ok = trio.Event()
        self._dirty_confirms: list[Channel] = []
        #: Frames read during the handshake but not consumed yet (clients pipeline steps).
        self._handshake_frames: list[tuple[int, int, bytes]] = []
        self.writable = True
        #: Set when deliveries resume: the peer has read what we sent (see _wait_resumed).
        self._resumed = trio.Event()
        self.bytes_received = 0
        self.bytes_sent = 0

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.peer}>"

    # -- output --------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue bytes: sent when the open batch ends, or else by the writer task."""
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size > DELIVERY_HIGH_WATER:
            self.writable = False
        if self._in_batch:
            return
        if _batch.active and self._direct_out is not None and not self._sending:
            self._in_batch = True
            _batch.pending.append(self)
        else:
            self._wake.set()

    @property
    def output_size(self) -> int:
        """Bytes queued for the peer and not sent yet."""
        return self._out_size

    def _send_now(self) -> None:
        """Send the queued output without waiting; what the socket does not take, the writer does.

        Called when a batch ends. The writer is not sending (else this connection would not be
        in the batch), so nothing it sends can overtake or interleave with this.
        """
        self._in_batch = False
        out = self._out
        if not out:
            return
        if self._sending or not self.writable:  # over the high-water mark: the writer's job
            self._wake.set()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        sent = self._try_send(data)
        if sent == len(data):
            out.clear()
            self._out_size = 0
            self._drained.set()
            return
        out.clear()
        out.append(data[sent:])
        self._out_size = len(data) - sent
        self._wake.set()

    def _try_send(self, data: bytes) -> int:
        """Bytes of ``data`` the stream took at once (0 after an error, left to the writer)."""
        try:
            sent = self._direct_out.try_send(data)  # type: ignore[union-attr]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._direct_out = None
            return 0
        self.bytes_sent += sent
        return sent

    def confirms_pending(self, channel: Channel) -> None:
        """``channel`` has confirms to send once the current read is processed."""
        self._dirty_confirms.append(channel)

    def confirms_due(self, channel: Channel) -> None:
        """``channel`` has confirms to send, found outside this connection's read loop."""
        dirty = self._dirty_confirms
        if not dirty or dirty[-1] is not channel:
            dirty.append(channel)
        self._wake.set()

    def _flush_confirms(self) -> None:
        for channel in self._dirty_confirms:
            channel.flush_confirms()
        self._dirty_confirms.clear()

    async def _writer(self) -> None:
        """Send what the batches did not: the only task that awaits ``send_all``."""
        while True:
            if self._dirty_confirms:
                self._flush_confirms()
            if not self._out:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            await self._send_queued()

    async def _send_queued(self) -> None:
        """Send everything queued: at once if the socket takes it, else through ``send_all``.

        The writer runs after its wake-up (a checkpoint), so a direct send here spares only
        ``send_all``'s own checkpoint, one scheduler pass.
        """
        data = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        sent = self._try_send(data) if self._direct_out is not None else 0
        if sent < len(data):
            self._sending = True
            await self.stream.send_all(memoryview(data)[sent:])
            self._sending = False
            self.bytes_sent += len(data) - sent
        if not self._out:
            self._drained.set()
        if not self.writable and self._out_size < DELIVERY_HIGH_WATER // 2:
            self._resume_deliveries()

    def _resume_deliveries(self) -> None:
        self.writable = True
        self._resumed.set()
        for channel in list(self.channels.values()):
            for consumer in list(channel.consumers.values()):
                consumer.queue.dispatch()

    async def _wait_drained(self, threshold: int = READ_STOP_WATER) -> None:
        while self._out_size > threshold or (threshold == 0 and (self._out or self._sending)):
            self._drained = trio.Event()
            await self._drained.wait()

    async def _flush_output(self) -> None:
        """Wait (bounded) until the writer has sent everything queued so far."""
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._wait_drained(0)

    # -- lifecycle -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run the connection until the peer leaves or it is closed."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                await self._converse(nursery)
                await self._flush_output()
                nursery.cancel_scope.cancel()
            self._release()
            if self._graceful_end and not self._out:
                await self._linger()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionResetError):
            self.log.info("connection_lost", state=self._state)
        finally:
            self._release()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)
            self._finished.set()

    async def _linger(self) -> None:
        """After the close handshake, send our FIN and discard input until the peer's (bounded).

        Closing a socket that still holds unread input makes the kernel answer with a reset
        instead of a FIN, and a reset can destroy the close-ok the peer has not read yet: a
        client that sent frames after its connection.close, or was still sending when the
        broker closed, would see "connection reset" instead of a clean close. RabbitMQ
        likewise keeps reading after the close handshake until the client closes
        (rabbit_reader, connection state ``closed``). Our FIN first means a client that waits
        for the server to close is not kept waiting. Streams that cannot half-close are
        closed at once, as before. Everything (queues, consumers) is released already.
        """
        stream = self.stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return
        with trio.move_on_after(LINGER_TIMEOUT):
            try:
                await stream.send_eof()
                while await stream.receive_some(RECEIVE_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionResetError):
                # The peer went first, abruptly: the socket is finished either way.
                return

    async def _converse(self, nursery: trio.Nursery) -> None:
        """Handshake, then frames until the end; every ending is handled here."""
        try:
            with self._read_scope:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await self._handshake()
                nursery.start_soon(self._heartbeats)
                await self._read_loop()
        except _Closed:
            return
        except trio.TooSlowError:
            self.log.warning("handshake_timeout", state=self._state)
            return
        except AMQPError as error:
            await self._close_with(error)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.log.info("connection_lost", state=self._state)
            return
        except ConnectionResetError:
            self.log.info("connection_reset", state=self._state)
            return
        except Exception as error:
            # A bug outside frame dispatch (handshake...): 541 for this connection only.
            self.log.exception("internal_error", state=self._state)
            await self._close_with(InternalError(f"{type(error).__name__}: {error}"))
            return
        if self._pending_close is not None:  # close() cancelled the read scope
            await self._close_with(self._pending_close)

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        for channel in list(self.channels.values()):
            channel.release()
        self.channels.clear()
        if self.vhost is not None:
            self.vhost.owner_closed(self)
        self.broker.connection_closed(self)

    async def close(self, error: AMQPError) -> None:
        """Close from the broker side (shutdown, fencing) and wait until it is done.

        The connection's own task sends connection.close and waits for close-ok, so only one
        task ever reads the stream.
        """
        self._pending_close = error
        self._read_scope.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT + 1):
            await self._finished.wait()

    async def _close_with(self, error: AMQPError) -> None:
        if self._closing:
            return
        self._closing = True
        level = "info" if isinstance(error, ConnectionForced) else "warning"
        getattr(self.log, level)(
            "connection_closed_by_broker", code=error.reply_code, reason=error.reply_text
        )
        if self._state in ("start", "header"):
            return
        self.send(
            M.encode_method(
                0,
                commands.Connection.Close(
                    reply_code=error.reply_code,
                    reply_text=error.reply_text,
                    class_id=error.class_id,
                    method_id=error.method_id,
                ),
            )
        )
        await self._flush_output()
        with trio.move_on_after(CLOSE_TIMEOUT) as waited:
            await self._drain_until_close_ok()
        # A peer that did not answer in time is not worth lingering for.
        self._graceful_end = not waited.cancelled_caught

    async def _drain_until_close_ok(self) -> None:
        """After connection.close, discard everything but close-ok (spec 2.2.4)."""
        parser = self.parser
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            try:
                frames = parser.feed(data)
            except AMQPError:
                return
            for frame_type, channel, payload in frames:
                if frame_type == C.FRAME_METHOD and channel == 0 and len(payload) >= 4:
                    index = int.from_bytes(payload[:4], "big")
                    if index in (_CLOSE_OK, _CLOSE):
                        return

    # -- handshake -----------------------------------------------------------------------------

    async def _handshake(self) -> None:
        self._state = "header"
        header = await self._receive_exactly(8)
        older = C.OLDER_PROTOCOL_HEADERS.get(header)
        if header != C.PROTOCOL_HEADER and older is None:
            self.log.warning("bad_protocol_header", received=header.hex())
            self.send(C.PROTOCOL_HEADER)
            self._graceful_end = True  # the rest of what it sent must not reset our header
            raise _Closed
        self._state = "start"
        start = self._start_method()
        if older is not None:
            # An older client (0-9 or 0-8 header) is told the version it asked for, as
            # RabbitMQ 3.x tells it, and is then spoken 0-9-1 to.
            self.log.info("older_protocol_header", received=header.hex())
            start.version_major, start.version_minor = older
        self.send(M.encode_method(0, start))
        self._state = "start-ok"
        start_ok = await self._expect_method(_START_OK)
        self._admit(start_ok)
        self._authenticate(start_ok)
        self._state = "tune-ok"
        self.send(
            M.encode_method(
                0,
                commands.Connection.Tune(
                    channel_max=self.broker.channel_max,
                    frame_max=self.broker.frame_max,
                    heartbeat=self.broker.heartbeat,
                ),
            )
        )
        self._tune(await self._expect_method(_TUNE_OK))
        self._state = "open"
        self._open(await self._expect_method(_OPEN))
        self._state = "opened"

    async def _receive_exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = await self.stream.receive_some(count - len(data))
            if not chunk:
                raise _Closed
            data += chunk
        return data

    def _start_method(self) -> commands.Connection.Start:
        capabilities = {
            "publisher_confirms": True,
            "exchange_exchange_bindings": True,
            "basic.nack": True,
            "consumer_cancel_notify": True,
            "connection.blocked": True,
            "consumer_priorities": True,
            "authentication_failure_close": True,
            "per_consumer_qos": True,
            "direct_reply_to": True,
        }
        properties = {
            "product": "plugmq",
            "version": __version__,
            "platform": "Python/trio",
            "copyright": "plugmq authors",
            "information": "Licensed under the Apache License 2.0",
            "cluster_name": self.broker.cluster_name,
        }
        for extra in self.broker.plugins.server_properties(self.broker):
            capabilities.update(extra.pop("capabilities", None) or {})
            properties.update(extra)
        properties["capabilities"] = capabilities
        return commands.Connection.Start(
            version_major=0,
            version_minor=9,
            server_properties=properties,
            mechanisms=" ".join(self.broker.mechanisms),
            locales="en_US",
        )

    async def _expect_method(self, index: int) -> Any:
        """Read until one method frame arrives on channel 0; it must be ``index``."""
        while True:
            while not self._handshake_frames:
                self._handshake_frames.extend(await self._read_frames())
            frame_type, channel, payload = self._handshake_frames.pop(0)
            if frame_type == C.FRAME_HEARTBEAT:
                continue
            if frame_type != C.FRAME_METHOD or channel != 0:
                raise CommandInvalid(f"expected a connection method, got frame type {frame_type}")
            got, args = M.decode_method(payload)
            if got == _CLOSE:
                self.send(M.encode_method(0, commands.Connection.CloseOk()))
                self._graceful_end = True
                raise _Closed
            if got != index:
                raise CommandInvalid(
                    f"expected {M.method_name(index)}, got {M.method_name(got)}", *_split(got)
                )
            return args

    async def _read_frames(self) -> list:
        data = await self._receive()
        if not data:
            # The peer closed its socket without connection.close (killed, or a careless
            # client): worth a line, as unacked messages are requeued because of it.
            self.log.info("connection_lost", state=self._state, reason="peer closed the socket")
            raise _Closed
        self.bytes_received += len(data)
        return self.parser.feed(data)

    async def _receive(self) -> bytes:
        """The next bytes from the peer (``b""`` at its end).

        On a :class:`DirectStream` an idle connection waits for readability and then reads,
        rather than reading, failing, waiting and reading again; a busy one (the last read
        was big) reads at once after a checkpoint, as ``receive_some`` would.
        """
        direct = self._direct_in
        if direct is None:
            return await self.stream.receive_some(RECEIVE_SIZE)
        if self._busy_read:
            await trio.lowlevel.checkpoint()
            data = direct.try_receive(RECEIVE_SIZE)
        else:
            data = None
        while data is None:
            await direct.wait_readable()
            data = direct.try_receive(RECEIVE_SIZE)
        self._busy_read = len(data) >= BUSY_READ
        return data

    def _admit(self, start_ok: commands.Connection.StartOk) -> None:
        """Ask the connection hook (and the broker's role) whether to serve this client."""
        info = ConnectionInfo(self.peer, start_ok.client_properties or {}, start_ok.mechanism)
        refusal = self.broker.admit(info)
        if refusal is not None:
            self.log.info("connection_refused", code=refusal.reply_code, reason=refusal.text)
            raise refusal.error()

    def _authenticate(self, start_ok: commands.Connection.StartOk) -> None:
        self.client_properties = start_ok.client_properties or {}
        capabilities = self.client_properties.get("capabilities") or {}
        self.consumer_cancel_notify = bool(capabilities.get("consumer_cancel_notify"))
        self.supports_blocked = bool(capabilities.get("connection.blocked"))
        mechanism = self.broker.mechanisms.get(start_ok.mechanism)
        if mechanism is None:
            # As rabbit_reader:auth_mechanism_to_module: command_invalid, not access_refused.
            raise CommandInvalid(f"unknown authentication mechanism '{start_ok.mechanism}'", 10, 11)
        response = start_ok.response
        if isinstance(response, str):
            response = response.encode("latin-1")
        try:
            user, password = _credentials(mechanism, response)
            self.broker.users.authenticate(user, password, _is_loopback(self.peer))
        except ConnectionAccessRefused as error:
            self.log.warning("auth_failed", mechanism=start_ok.mechanism, reason=str(error))
            error.class_id, error.method_id = 10, 11
            raise
        self.user = user

    def _tune(self, tune_ok: commands.Connection.TuneOk) -> None:
        frame_max = tune_ok.frame_max or self.broker.frame_max
        if frame_max < C.FRAME_MIN_SIZE:
            raise NotAllowed(f"frame_max={frame_max} < {C.FRAME_MIN_SIZE} min size", 10, 31)
        if frame_max > self.broker.frame_max:
            raise NotAllowed(f"frame_max={frame_max} > {self.broker.frame_max} max size", 10, 31)
        self.frame_max = frame_max
        self.parser.frame_max = frame_max
        channel_max = tune_ok.channel_max or self.broker.channel_max
        self.channel_max = min(channel_max, self.broker.channel_max)
        self.heartbeat = tune_ok.heartbeat

    def _open(self, open_: commands.Connection.Open) -> None:
        vhost = self.broker.vhosts.get(open_.virtual_host)
        if vhost is None:
            raise NotAllowed(
                f"access to vhost '{open_.virtual_host}' refused for user '{self.user}': "
                "no such vhost",
                10,
                40,
            )
        grant = self.broker.access.grant(self.user, vhost.name)
        if grant is None:
            self.log.warning("vhost_access_refused", user=self.user, vhost=vhost.name)
            raise NotAllowed(
                f"access to vhost '{vhost.name}' refused for user '{self.user}'", 10, 40
            )
        self.grant = grant
        self.vhost = vhost
        self.send(M.encode_method(0, commands.Connection.OpenOk()))
        self.log.info(
            "connection_opened",
            user=self.user,
            vhost=vhost.name,
            client=str(self.client_properties.get("product", "")),
            heartbeat=self.heartbeat,
            frame_max=self.frame_max,
        )

    # -- the read loop ---------------------------------------------------------------------------

    def memory_alarm_changed(self, alarm: bool) -> None:
        """Tell a publishing client that the broker blocks (or unblocks) it."""
        if not self.is_publisher or not self.supports_blocked or self._closing:
            return
        if alarm:
            method = commands.Connection.Blocked(reason=self.broker.memory.reason)
        else:
            method = commands.Connection.Unblocked()
        self.send(M.encode_method(0, method))

    async def _wait_while_blocked(self) -> None:
        memory = self.broker.memory
        self.log.info("connection_blocked", reason="memory alarm")
        await memory.cleared.wait()
        self.log.info("connection_unblocked")

    def _must_pause_reading(self) -> bool:
        return (
            self._out_size > READ_STOP_WATER
            or not self.writable
            or (self.is_publisher and self.broker.memory.alarm)
        )

    async def _pause_reading(self) -> None:
        """Stop reading until output drains and the memory alarm is clear.

        Heartbeats the peer sent meanwhile sit unread in the socket, so the missed-heartbeat
        check is suspended while paused (as RabbitMQ pauses its heartbeat monitor).
        """
        self._reading_paused = True
        try:
            if self._out_size > READ_STOP_WATER:
                await self._wait_drained()
            elif not self.writable:
                await self._wait_resumed()
            if self.is_publisher and self.broker.memory.alarm:
                await self._wait_while_blocked()
        finally:
            self._reading_paused = False

    async def _read_loop(self) -> None:
        frames, self._handshake_frames = self._handshake_frames, []
        self._run_batch(frames)
        while True:
            if self._must_pause_reading():
                await self._pause_reading()
            self._run_batch(await self._read_frames())

    def _run_batch(self, frames: list[tuple[int, int, bytes]]) -> None:
        """Handle the frames of one read; then every connection sends what it got meanwhile."""
        _start_batch()
        try:
            for frame in frames:
                self._dispatch(frame)
            if self._dirty_confirms:
                self._flush_confirms()
        finally:
            _end_batch()

    async def _wait_resumed(self) -> None:
        """Stop reading until deliveries to this peer resume (it read what we sent).

        Deliveries pause when the peer does not read its socket. Reading on would let it
        publish without limit into queues that only it consumes (memory grows until the
        global alarm, which then blocks every publisher); not reading pushes back on this
        peer alone. One read per resume keeps a slow reader's acks flowing.
        """
        self._resumed = trio.Event()
        await self._resumed.wait()

    def _dispatch(self, frame: tuple[int, int, bytes]) -> None:
        frame_type, number, payload = frame
        if number == 0:
            self._channel_zero(frame_type, payload)
            return
        channel = self.channels.get(number)
        try:
            if channel is None:
                self._open_channel(frame_type, number, payload)
            elif frame_type == C.FRAME_METHOD:
                channel.handle_method(payload)
            elif frame_type == C.FRAME_BODY:
                channel.handle_body(payload)
            elif frame_type == C.FRAME_HEADER:
                channel.handle_header(payload)
            else:
                raise UnexpectedFrame(f"heartbeat frame on channel {number}")
        except AMQPError as error:
            if not error.soft or channel is None:
                raise
            self.close_channel(channel, error)
        except Exception as error:
            self.log.exception("internal_error", channel=number)
            raise InternalError(f"{type(error).__name__}: {error}") from error

    def close_channel(self, channel: Channel, error: AMQPError) -> None:
        """Close ``channel`` with ``error`` (channel.close); the connection stays open."""
        self.log.info(
            "channel_closed_by_broker",
            channel=channel.number,
            code=error.reply_code,
            reason=error.reply_text,
        )
        channel.release()
        self.send(
            M.encode_method(
                channel.number,
                commands.Channel.Close(
                    reply_code=error.reply_code,
                    reply_text=error.reply_text,
                    class_id=error.class_id,
                    method_id=error.method_id,
                ),
            )
        )

    def _open_channel(self, frame_type: int, number: int, payload: bytes) -> None:
        if frame_type != C.FRAME_METHOD:
            # rabbit_command_assembler: a new channel expects a method; content is 505.
            raise UnexpectedFrame(
                f"expected method frame, got frame type {frame_type} on channel {number}"
            )
        index, _ = M.decode_method(payload)
        if index != _CHANNEL_OPEN:
            raise ChannelNotOpen(
                f"expected 'channel.open' on channel {number}, got {M.method_name(index)}",
                *_split(index),
            )
        # channel_max bounds how many channels are open, not their numbers (rabbit_reader:
        # create_channel; RabbitMQ opens channel 65535 under channel_max 2047).
        if len(self.channels) >= self.channel_max:
            raise NotAllowed(
                f"number of channels opened ({len(self.channels)}) has reached the "
                f"negotiated channel_max ({self.channel_max})",
                20,
                10,
            )
        self.channels[number] = Channel(self, number)
        self.send(M.encode_method(number, commands.Channel.OpenOk()))

    def forget_channel(self, channel: Channel) -> None:
        """The channel finished closing; its number may be reused."""
        if self.channels.get(channel.number) is channel:
            del self.channels[channel.number]

    def _channel_zero(self, frame_type: int, payload: bytes) -> None:
        if frame_type == C.FRAME_HEARTBEAT:
            return
        if frame_type != C.FRAME_METHOD:
            raise UnexpectedFrame("content frame on channel 0")
        index, args = M.decode_method(payload)
        if index == _CLOSE:
            self.log.info(
                "connection_closed_by_client", code=args.reply_code, reason=args.reply_text
            )
            self.send(M.encode_method(0, commands.Connection.CloseOk()))
            self._graceful_end = True
            raise _Closed
        if index == _CLOSE_OK:
            raise _Closed
        if index == _UPDATE_SECRET:
            self._update_secret(args)
            return
        if index in _IGNORED_ON_ZERO:
            return
        # rabbit_reader:handle_method0 answers any other method on channel 0 with 504.
        raise ChannelNotOpen(
            f"unexpected method {M.method_name(index)} in connection state running",
            *_split(index),
        )

    def _update_secret(self, update: commands.Connection.UpdateSecret) -> None:
        """connection.update-secret, RabbitMQ's extension for expiring secrets (OAuth tokens).

        The new secret must pass the same check as the password at login, for the user that
        logged in (so a client can move to a changed password without reconnecting); the
        user must still have access to the vhost. Otherwise the connection is closed with
        530, as rabbit_reader closes it ("New secret was refused by one of the backends").
        RabbitMQ's internal user database accepts any secret here (its state cannot
        expire); plugmq checks it, as a secret that passes nothing should not extend a login.
        """
        secret = update.new_secret
        try:
            if isinstance(secret, bytes):  # pamqp keeps a longstr that is not UTF-8 as bytes
                raise ConnectionAccessRefused("the new secret is not UTF-8")
            self.broker.users.authenticate(self.user, secret or "", _is_loopback(self.peer))
        except ConnectionAccessRefused as error:
            self.log.warning("update_secret_refused", user=self.user, reason=str(error))
            raise NotAllowed(
                f"New secret was refused by one of the backends (user '{self.user}')", 10, 70
            ) from error
        if self.broker.access.grant(self.user, self.vhost.name) is None:
            raise NotAllowed(
                f"access to vhost '{self.vhost.name}' refused for user '{self.user}'", 10, 70
            )
        self.log.info("secret_updated", user=self.user, reason=update.reason)
        self.send(M.encode_method(0, commands.Connection.UpdateSecretOk()))

    # -- heartbeats ------------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """Send a heartbeat after an interval with nothing sent; drop a peer silent too long.

        As RabbitMQ's rabbit_heartbeat, activity is seen in the byte counters at each tick
        (half the heartbeat), so reads and writes never look at the clock. While reading is
        paused the peer's frames wait unread in the socket, so it counts as heard.
        """
        if not self.heartbeat:
            return
        interval = self.heartbeat / 2
        sent, received = self.bytes_sent, self.bytes_received
        heard_at = trio.current_time()
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            if self.bytes_sent == sent:
                self.send(HEARTBEAT_FRAME)
            sent = self.bytes_sent
            if self.bytes_received != received or self._reading_paused:
                received, heard_at = self.bytes_received, now
            elif now - heard_at > 2 * self.heartbeat:
                self.log.warning("missed_heartbeats", timeout=self.heartbeat)
                await trio.aclose_forcefully(self.stream)
                return


_IGNORED_ON_ZERO = frozenset(
    (
        commands.Connection.Blocked.index,  # type: ignore[attr-defined]
        commands.Connection.Unblocked.index,  # type: ignore[attr-defined]
    )
)


def _credentials(mechanism: Mechanism, response: bytes) -> tuple[str, str]:
    """The mechanism's (user, password); an undecodable response is access refused.

    Mechanisms are plugins: one that lets a ``ValueError`` (bad UTF-8 in a field...) escape
    must still cost the client a 403, not the connection an unmapped exception.
    """
    try:
        return mechanism.credentials(response)
    except ValueError as error:
        raise ConnectionAccessRefused(f"malformed {mechanism.name} response: {error}") from error


def _split(index: int) -> tuple[int, int]:
    return index >> 16, index & 0xFFFF


def _is_loopback(peer: str) -> bool:
    host = peer.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "local")
