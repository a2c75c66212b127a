"""One negotiated AMQP connection over one stream: reader, writer, heartbeats, channels.

:class:`Session` is what :class:`~plugmq.client.connection.ClientConnection` holds while it is
connected; after a failover the connection gets a new session (and new channels). The session
runs three tasks in its own nursery:

* the reader: receives bytes, splits frames, handles channel 0 and hands every other frame to
  its channel synchronously (one task per connection, so frames are processed in order);
* the writer: sends whatever the channels queued (see :mod:`plugmq.client.writer`);
* the heartbeat sender: queues a heartbeat frame when nothing was sent for half the interval.

The reader gives up when the broker is silent for two heartbeat intervals. A lost connection is
not an exception out of :meth:`Session.run` (it would cancel the user's code through the
connection's nursery): it becomes :attr:`Session.error`, raised by every channel call.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import structlog
import trio
from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp.errors import AMQPError, CommandInvalid, SyntaxError_, UnexpectedFrame
from plugmq.amqp.frames import HEARTBEAT_FRAME, Frame
from plugmq.amqp.methods import decode_method, encode_method
from plugmq.client.channel import ClientChannel
from plugmq.client.errors import AMQPClientError, ConnectionClosed
from plugmq.client.handshake import Tuning
from plugmq.client.urls import BrokerURL
from plugmq.client.writer import FrameWriter

log = structlog.get_logger("plugmq.client")

RECEIVE_SIZE = 256 * 1024
TRANSPORT_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
_MALFORMED = (struct.error, IndexError, UnicodeDecodeError)


class Session:
    """The live state of one AMQP connection (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, url: BrokerURL, tuning: Tuning) -> None:
        self.stream = stream
        self.url = url
        self.heartbeat = tuning.heartbeat
        self.frame_max = tuning.frame_max
        self.channel_max = tuning.channel_max
        self.server_properties = tuning.server_properties
        self.writer = FrameWriter(stream)
        self.channels: dict[int, ClientChannel] = {}
        #: The broker's reason while it blocks publishers (connection.blocked), else None.
        self.blocked_reason: str | None = None
        #: Why the connection ended; None while it is alive.
        self.error: ConnectionClosed | None = None
        self.done = trio.Event()
        self._parser = tuning.parser
        self._early_frames = tuning.pending
        self._unblocked = trio.Event()
        self._unblocked.set()
        self._next_channel = 1
        self._closing = False
        self._scope: trio.CancelScope | None = None

    @property
    def alive(self) -> bool:
        """True until the connection ends (for whatever reason)."""
        return self.error is None

    # ----------------------------------------------------------------------------------------
    # Running
    # ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run the connection's tasks until it ends; never raises for a lost connection."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                if self.error is not None:  # closed before we started
                    nursery.cancel_scope.cancel()
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._read_loop)
                if self.heartbeat:
                    nursery.start_soon(self._send_heartbeats)
        finally:
            self._finish()
            await trio.aclose_forcefully(self.stream)

    def _end(self, error: ConnectionClosed) -> None:
        """Record why the connection ends (first reason wins) and stop its tasks."""
        if self.error is None:
            self.error = error
            log.debug("connection ended", url=str(self.url), reason=str(error))
        if self._scope is not None:
            self._scope.cancel()

    def _finish(self) -> None:
        if self.error is None:
            self.error = ConnectionClosed(0, "connection tasks stopped")
        quiet = self._closing and self.error.reply_code == C.REPLY_SUCCESS
        for channel in list(self.channels.values()):
            channel.fail(self.error, quiet=quiet)
        self.writer.fail(self.error)
        self._unblocked.set()
        self.done.set()

    async def _write_loop(self) -> None:
        try:
            await self.writer.run()
        except TRANSPORT_ERRORS as error:
            self._end(_lost(f"sending failed: {error!r}", error))

    async def _send_heartbeats(self) -> None:
        interval = self.heartbeat / 2
        writer = self.writer
        while True:
            deadline = writer.last_send + interval
            if trio.current_time() < deadline:
                await trio.sleep_until(deadline)
                continue
            if not writer.backlog:
                writer.write(HEARTBEAT_FRAME)
            await trio.sleep(interval / 4)  # let it leave; never spin while the writer is stuck

    async def _read_loop(self) -> None:
        try:
            error = self._dispatch(self._early_frames) or await self._receive_frames()
        except AMQPError as protocol_error:
            error = await self._refuse(protocol_error)
        except _MALFORMED as malformed:  # a hot-path decoder met a truncated field
            error = await self._refuse(SyntaxError_(f"malformed frame from broker: {malformed!r}"))
        except TRANSPORT_ERRORS as transport_error:
            error = _lost(f"receiving failed: {transport_error!r}", transport_error)
        self._end(error)

    async def _receive_frames(self) -> ConnectionClosed:
        timeout = 2 * self.heartbeat if self.heartbeat else math.inf
        receive, feed = self.stream.receive_some, self._parser.feed
        while True:
            with trio.move_on_after(timeout) as scope:
                data = await receive(RECEIVE_SIZE)
            if scope.cancelled_caught:
                return ConnectionClosed(0, f"no data from the broker for {timeout} s (heartbeats)")
            if not data:
                return ConnectionClosed(0, "the broker closed the transport")
            error = self._dispatch(feed(data))
            if error is not None:
                await self._drain()
                return error

    async def _drain(self) -> None:
        """Give queued frames (close-ok, our close) a bounded chance to leave."""
        with trio.move_on_after(1):
            await self.writer.drain()

    async def _refuse(self, error: AMQPError) -> ConnectionClosed:
        """The broker broke the protocol: tell it (connection.close with the code) and end."""
        log.warning("protocol error from broker", url=str(self.url), error=str(error))
        close = commands.Connection.Close(
            error.reply_code, error.reply_text, error.class_id, error.method_id
        )
        if self.error is None:
            self.writer.write(encode_method(0, close))
            await self._drain()
        return ConnectionClosed(error.reply_code, error.reply_text, error.class_id, error.method_id)

    # ----------------------------------------------------------------------------------------
    # Incoming frames
    # ----------------------------------------------------------------------------------------

    def _dispatch(self, frames: list[Frame]) -> ConnectionClosed | None:
        """Hand frames to their channels; return an error when channel 0 ends the connection."""
        channels = self.channels
        for frame_type, number, payload in frames:
            if number:
                channel = channels.get(number)
                if channel is not None:
                    channel.handle_frame(frame_type, payload)
                # else: a late frame for a channel whose close-ok was processed: ignore it
            elif frame_type == C.FRAME_METHOD:
                error = self._on_connection_method(decode_method(payload)[1])
                if error is not None:
                    return error
            elif frame_type != C.FRAME_HEARTBEAT:
                raise UnexpectedFrame(f"frame type {frame_type} on channel 0")
        return None

    def _on_connection_method(self, method: Any) -> ConnectionClosed | None:
        if isinstance(method, commands.Connection.Close):
            self.writer.write(encode_method(0, commands.Connection.CloseOk()))
            return ConnectionClosed(
                method.reply_code, method.reply_text, method.class_id, method.method_id
            )
        if isinstance(method, commands.Connection.CloseOk) and self._closing:
            return ConnectionClosed(C.REPLY_SUCCESS, "closed by client")
        if isinstance(method, commands.Connection.Blocked):
            self._block(method.reason)
        elif isinstance(method, commands.Connection.Unblocked):
            self._unblock()
        else:
            raise CommandInvalid(f"unexpected {method.name} on channel 0")
        return None

    def _block(self, reason: str) -> None:
        log.info("broker blocked publishing", url=str(self.url), reason=reason)
        self.blocked_reason = reason or "blocked"
        if self._unblocked.is_set():
            self._unblocked = trio.Event()

    def _unblock(self) -> None:
        log.info("broker unblocked publishing", url=str(self.url))
        self.blocked_reason = None
        self._unblocked.set()

    async def wait_unblocked(self) -> None:
        """Wait while the broker blocks publishers (returns at once if it does not)."""
        while self.blocked_reason is not None and self.error is None:
            await self._unblocked.wait()
        self._check_alive()

    # ----------------------------------------------------------------------------------------
    # Channels and closing
    # ----------------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.error is not None:
            raise self.error.again()

    def _allocate_channel(self) -> int:
        limit = self.channel_max
        if len(self.channels) >= limit:
            raise AMQPClientError(f"all {limit} channels of the connection are in use")
        number = self._next_channel
        while number in self.channels:
            number = number + 1 if number < limit else 1
        self._next_channel = number + 1 if number < limit else 1
        return number

    async def open_channel(self, **options: Any) -> ClientChannel:
        """Open a new channel; ``options`` go to :class:`ClientChannel`."""
        self._check_alive()
        number = self._allocate_channel()
        channel = self.channels[number] = ClientChannel(self, number, **options)
        try:
            await channel.open()
        except BaseException:
            if channel.is_open:
                channel.close_nowait()  # the reader frees the number on close-ok
            raise
        return channel

    def release_channel(self, number: int) -> None:
        """Forget a closed channel so its number can be reused."""
        self.channels.pop(number, None)

    async def close(self, timeout: float) -> None:
        """Close the connection (connection.close, wait for close-ok at most ``timeout`` s)."""
        if self.error is None and not self._closing:
            self._closing = True
            close = commands.Connection.Close(C.REPLY_SUCCESS, "closed by client", 0, 0)
            self.writer.write(encode_method(0, close))
        with trio.move_on_after(timeout):
            await self.done.wait()
            return
        self._end(ConnectionClosed(0, f"no close-ok from the broker within {timeout} s"))
        await self.done.wait()


def _lost(text: str, cause: BaseException) -> ConnectionClosed:
    error = ConnectionClosed(0, text)
    error.__cause__ = cause
    return error
