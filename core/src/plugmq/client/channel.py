"""One AMQP channel of a client connection.

Incoming frames arrive through :meth:`ClientChannel.handle_frame`, called synchronously by the
connection's reader task: deliveries, confirms and returns are handled there without awaiting,
and replies to synchronous methods wake the one task waiting in :meth:`ClientChannel._call`.
Outgoing frames are queued on the connection's :class:`~plugmq.client.writer.FrameWriter`.

A channel closed by the broker (channel.close, e.g. 404 for a passive declare of a missing
queue) raises :class:`ChannelClosed` with the broker's reply code and text to the task waiting
at that moment and to every later call; the connection and its other channels stay usable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
import trio
from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp import methods
from plugmq.amqp.errors import UnexpectedFrame
from plugmq.client import codec
from plugmq.client.confirms import ConfirmTracker
from plugmq.client.consumer import Consumer
from plugmq.client.errors import AMQPClientError, ChannelClosed, ClosedError
from plugmq.client.message import Message, ReturnedMessage
from plugmq.client.operations import Arguments, ChannelOperations, as_table

if TYPE_CHECKING:
    from plugmq.client.session import Session

log = structlog.get_logger("plugmq.client")

Properties = Mapping[str, Any] | commands.Basic.Properties | bytes | None

#: Past this many queued outgoing bytes a producer yields to the scheduler so the writer task
#: can send; below it publishes and acks only queue bytes, and frames of one tick leave in
#: one write.
FLUSH_AT = 64 * 1024

_DELIVER = 1
_GET = 2
_RETURN = 3


class _Call:
    """A synchronous method waiting for its reply."""

    __slots__ = ("context", "error", "event", "expected", "result")

    def __init__(self, expected: tuple[type, ...], context: Any) -> None:
        self.expected = expected
        self.context = context
        self.event = trio.Event()
        self.result: Any = None
        self.error: ClosedError | None = None


class _GetOk:
    """Marker type: a basic.get answered with a message (built by the content assembler)."""


class ClientChannel(ChannelOperations):
    """An open AMQP channel. Obtain one with ``async with conn.channel() as ch``.

    Returned messages (basic.return for ``mandatory`` publishes) go to ``on_return`` if given,
    else to :attr:`returns`, a trio memory receive channel holding up to ``returns_buffer``
    messages (more are dropped with a warning, so an unread channel cannot grow forever).
    ``on_return`` runs in the connection's reader task: keep it short and do not raise (an
    exception there is a bug and ends the connection's tasks loudly).
    """

    def __init__(
        self,
        session: Session,
        number: int,
        on_return: Callable[[ReturnedMessage], None] | None = None,
        returns_buffer: int = 1024,
    ) -> None:
        self.number = number
        self._session = session
        self._writer = session.writer
        self._frame_max = session.frame_max
        self._error: ClosedError | None = None
        self._closing = False
        self._closed = trio.Event()
        self._call_lock = trio.Lock()
        self._call_pending: _Call | None = None
        self._consumers: dict[str, Consumer] = {}
        self._consumer_serial = 0
        self._confirms: ConfirmTracker | None = None
        self._incoming: tuple[int, Any] | None = None
        self._header: bytes | None = None
        self._parts: list[bytes] = []
        self._remaining = 0
        self._flow = trio.Event()
        self._flow.set()
        self._on_return = on_return
        self._returns_send, self.returns = trio.open_memory_channel[ReturnedMessage](returns_buffer)

    # ----------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True until the channel is closed (by either side) or its connection is lost."""
        return self._error is None and not self._closing

    @property
    def confirm_mode(self) -> bool:
        """True after :meth:`confirm_select`."""
        return self._confirms is not None

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error.again()
        if self._closing:
            raise ChannelClosed(200, "channel is closing")

    async def _gate(self) -> None:
        """Back-pressure and fairness before queueing a frame (see :data:`FLUSH_AT`)."""
        backlog = self._writer.backlog
        if backlog < FLUSH_AT:
            await trio.lowlevel.checkpoint_if_cancelled()
        elif backlog < self._writer.high_water:
            await trio.lowlevel.checkpoint()
        else:
            await self._writer.wait_writable()
        self._check_open()

    def _send(self, method: Any) -> None:
        self._writer.write(methods.encode_method(self.number, method))

    async def _call(self, method: Any, *replies: type, context: Any = None) -> Any:
        """Send a synchronous method and return the broker's reply.

        A caller cancelled while waiting leaves its reply pending; the next call waits for it
        first, so replies never get matched to the wrong request.
        """
        async with self._call_lock:
            stale = self._call_pending
            if stale is not None:
                await stale.event.wait()
            self._check_open()
            call = self._call_pending = _Call(replies, context)
            self._send(method)
            await call.event.wait()
        if call.error is not None:
            raise call.error.again()
        return call.result

    def _resolve(self, result: Any) -> None:
        call = self._call_pending
        if call is None:
            raise UnexpectedFrame(
                f"unexpected reply {type(result).__name__} on channel {self.number}"
            )
        self._call_pending = None
        call.result = result
        call.event.set()

    # ----------------------------------------------------------------------------------------
    # Opening and closing
    # ----------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Send channel.open and wait for open-ok (called by the connection)."""
        await self._call(commands.Channel.Open(), commands.Channel.OpenOk)

    def close_nowait(self, reply_code: int = 200, reply_text: str = "closed by client") -> None:
        """Start closing: send channel.close; the reader finishes on close-ok."""
        if self._error is None and not self._closing:
            self._closing = True
            self._send(commands.Channel.Close(reply_code, reply_text, 0, 0))

    async def close(self) -> None:
        """Close the channel and wait for the broker's close-ok. Idempotent."""
        self.close_nowait()
        await self._closed.wait()

    def fail(self, error: ClosedError, quiet: bool = False) -> None:
        """Mark the channel closed with ``error`` and wake everything waiting on it.

        ``quiet`` ends consumers' iteration without raising (a close we asked for).
        """
        if self._error is not None:
            return
        self._error = error
        self._incoming = self._header = None
        for consumer in self._consumers.values():
            consumer.end(None if quiet else error)
        call = self._call_pending
        if call is not None:
            self._call_pending = None
            call.error = error
            call.event.set()
        if self._confirms is not None:
            self._confirms.fail(error)
        self._returns_send.close()
        self._flow.set()
        self._closed.set()
        self._session.release_channel(self.number)

    # ----------------------------------------------------------------------------------------
    # Incoming frames (called by the reader task; never awaits)
    # ----------------------------------------------------------------------------------------

    def handle_frame(self, frame_type: int, payload: bytes) -> None:
        """Process one frame received on this channel."""
        if frame_type == C.FRAME_BODY:
            self._on_body(payload)
        elif frame_type == C.FRAME_METHOD:
            self._on_method(payload)
        elif frame_type == C.FRAME_HEADER:
            self._on_header(payload)
        else:
            raise UnexpectedFrame(f"frame type {frame_type} on channel {self.number}")

    def _on_method(self, payload: bytes) -> None:
        if self._incoming is not None:
            raise UnexpectedFrame(f"method frame while content is pending on {self.number}")
        index = codec.method_index(payload)
        if index == methods.BASIC_DELIVER:
            self._incoming = (_DELIVER, codec.decode_deliver(payload))
        elif index == methods.BASIC_ACK or index == methods.BASIC_NACK:
            self._on_confirm(payload, index == methods.BASIC_NACK)
        elif index == methods.BASIC_GET_OK:
            self._incoming = (_GET, codec.decode_get_ok(payload))
        elif index == methods.BASIC_RETURN:
            self._incoming = (_RETURN, codec.decode_return(payload))
        else:
            self._on_cold_method(methods.decode_method(payload)[1])

    def _on_confirm(self, payload: bytes, nacked: bool) -> None:
        if self._confirms is None:
            raise UnexpectedFrame(f"publisher confirm on channel {self.number} not in confirm mode")
        tag, multiple = codec.decode_confirm(payload)
        self._confirms.confirm(tag, multiple, nacked)

    def _on_header(self, payload: bytes) -> None:
        if self._incoming is None or self._header is not None:
            raise UnexpectedFrame(f"unexpected content header on channel {self.number}")
        self._header = payload
        self._remaining = codec.body_size(payload)
        if not self._remaining:
            self._complete(b"")

    def _on_body(self, payload: bytes) -> None:
        if self._header is None:
            raise UnexpectedFrame(f"content body without a header on channel {self.number}")
        remaining = self._remaining - len(payload)
        if remaining < 0:
            raise UnexpectedFrame(f"content body larger than announced on {self.number}")
        self._remaining = remaining
        if remaining == 0 and not self._parts:
            self._complete(payload)
        else:
            self._parts.append(payload)
            if remaining == 0:
                body, self._parts = b"".join(self._parts), []
                self._complete(body)

    def _complete(self, body: bytes) -> None:
        assert self._incoming is not None and self._header is not None
        (kind, fields), header = self._incoming, self._header
        self._incoming = self._header = None
        if kind == _DELIVER:
            self._on_delivery(fields, body, header)
        elif kind == _GET:
            tag, redelivered, exchange, key, count = fields
            no_ack = self._call_pending is not None and self._call_pending.context
            channel = None if no_ack else self
            self._resolve(
                Message(channel, body, header, exchange, key, tag, redelivered, None, count)
            )
        else:
            code, text, exchange, key = fields
            self._on_returned(ReturnedMessage(body, header, exchange, key, code, text))

    def _on_delivery(
        self, fields: tuple[str, int, bool, str, str], body: bytes, header: bytes
    ) -> None:
        consumer_tag, tag, redelivered, exchange, key = fields
        consumer = self._consumers.get(consumer_tag)
        if consumer is None:
            if not self._closing:
                raise UnexpectedFrame(f"delivery for unknown consumer {consumer_tag!r}")
            return  # closing: the broker requeues it when the channel closes
        channel = None if consumer.no_ack else self
        consumer.deliver(
            Message(channel, body, header, exchange, key, tag, redelivered, consumer_tag)
        )

    def _on_returned(self, message: ReturnedMessage) -> None:
        if self._on_return is not None:
            self._on_return(message)
            return
        try:
            self._returns_send.send_nowait(message)
        except trio.WouldBlock:
            log.warning("returned message dropped: ch.returns is full", channel=self.number)
        except trio.BrokenResourceError:
            log.debug("returned message dropped: ch.returns was closed", channel=self.number)

    def _on_cold_method(self, method: Any) -> None:
        if isinstance(method, commands.Channel.Close):
            self._on_broker_close(method)
        elif isinstance(method, commands.Channel.CloseOk):
            self.fail(ChannelClosed(200, "closed by client"), quiet=True)
        elif self._closing:
            return  # after channel.close everything but close/close-ok is to be ignored
        elif isinstance(method, commands.Basic.Cancel):
            self._on_broker_cancel(method)
        elif isinstance(method, commands.Channel.Flow):
            self._on_flow(method.active)
        elif isinstance(method, commands.Basic.GetEmpty):
            self._resolve(None)
        elif self._call_pending is not None and isinstance(method, self._call_pending.expected):
            self._resolve(method)
        else:
            raise UnexpectedFrame(f"unexpected {method.name} on channel {self.number}")

    def _on_broker_close(self, method: commands.Channel.Close) -> None:
        self._writer.write(methods.encode_method(self.number, commands.Channel.CloseOk()))
        error = ChannelClosed(
            method.reply_code, method.reply_text, method.class_id, method.method_id
        )
        log.debug("channel closed by broker", channel=self.number, reply=str(error))
        self.fail(error)

    def _on_broker_cancel(self, method: commands.Basic.Cancel) -> None:
        consumer = self._consumers.pop(method.consumer_tag, None)
        if consumer is not None:
            consumer.cancelled_by_broker = True
            consumer.end()
        if not method.nowait:
            self._send(commands.Basic.CancelOk(method.consumer_tag))

    def _on_flow(self, active: bool) -> None:
        if active:
            self._flow.set()
        elif self._flow.is_set():
            self._flow = trio.Event()
        self._send(commands.Channel.FlowOk(active))

    # ----------------------------------------------------------------------------------------
    # Publishing
    # ----------------------------------------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties = None,
        *,
        mandatory: bool = False,
    ) -> int | None:
        """Publish a message; return at once (no confirm wait).

        In confirm mode, returns the publish sequence number (the delivery tag the broker
        will confirm), else None. Waits only while the connection is blocked by the broker,
        the channel's flow is off, or too many bytes are queued for sending.
        ``properties`` is a mapping with pamqp's names or a pamqp ``Basic.Properties``, or
        ``bytes``: encoded property flags and list, passed through (a received message's
        ``header_payload[12:]``, for forwarders).
        """
        return await self._publish(exchange, routing_key, body, properties, mandatory, False)

    async def publish_confirmed(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties = None,
        *,
        mandatory: bool = False,
    ) -> int:
        """Publish and wait for the broker's confirm; return the sequence number.

        Raises :class:`PublishNacked` if the broker nacks it. Requires :meth:`confirm_select`.
        """
        if self._confirms is None:
            raise AMQPClientError("publish_confirmed needs confirm mode: call confirm_select()")
        seq = await self._publish(exchange, routing_key, body, properties, mandatory, True)
        assert seq is not None
        await self._confirms.wait_for(seq)
        return seq

    async def _publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties,
        mandatory: bool,
        waited: bool,
    ) -> int | None:
        if self._session.blocked_reason is not None or not self._flow.is_set():
            await self._wait_publishable()
        await self._gate()
        props = codec.NO_PROPERTIES if properties is None else codec.encode_properties(properties)
        parts = codec.encode_publish(
            self.number, exchange, routing_key, mandatory, props, body, self._frame_max
        )
        self._writer.write_parts(parts)
        if self._confirms is not None:
            return self._confirms.add(waited)
        return None

    async def _wait_publishable(self) -> None:
        await self._session.wait_unblocked()
        await self._flow.wait()

    async def wait_for_confirms(self) -> None:
        """Wait until every message published so far on this channel is confirmed.

        Raises :class:`PublishNacked` listing the nacked sequence numbers (each is reported
        once), or the channel's error if it closes first.
        """
        if self._confirms is None:
            raise AMQPClientError("wait_for_confirms needs confirm mode: call confirm_select()")
        await self._confirms.wait_all()

    async def confirm_select(self) -> None:
        """Put the channel in publisher-confirm mode."""
        if self._confirms is None:
            await self._call(commands.Confirm.Select(), commands.Confirm.SelectOk)
            self._confirms = ConfirmTracker()

    # ----------------------------------------------------------------------------------------
    # Consuming
    # ----------------------------------------------------------------------------------------

    @asynccontextmanager
    async def consume(
        self,
        queue: str,
        *,
        no_ack: bool = False,
        prefetch: int | None = None,
        exclusive: bool = False,
        arguments: Arguments = None,
        consumer_tag: str | None = None,
    ) -> AsyncIterator[Consumer]:
        """Consume ``queue`` for the duration of the block; yields a :class:`Consumer`.

        ``prefetch`` sets ``basic_qos(prefetch_count=prefetch)`` first. Leaving the block
        cancels the consumer and requeues (basic.reject) messages it buffered but nobody took;
        with ``no_ack`` those are lost, as no_ack implies.
        """
        if prefetch is not None:
            await self.basic_qos(prefetch_count=prefetch)
        consumer = await self.start_consumer(
            queue,
            no_ack=no_ack,
            exclusive=exclusive,
            arguments=arguments,
            consumer_tag=consumer_tag,
        )
        try:
            yield consumer
        finally:
            await self.cancel_consumer(consumer)

    async def start_consumer(
        self,
        queue: str,
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: Arguments = None,
        consumer_tag: str | None = None,
    ) -> Consumer:
        """Start a consumer without a context manager; stop it with :meth:`cancel_consumer`."""
        if consumer_tag is None:
            self._consumer_serial += 1
            consumer_tag = f"plugmq.{self.number}.{self._consumer_serial}"
        # Registered before basic.consume is sent: deliveries may follow consume-ok in the
        # same read, before the waiting task runs again.
        consumer = self._consumers[consumer_tag] = Consumer(self, consumer_tag, no_ack)
        method = commands.Basic.Consume(
            queue=queue,
            consumer_tag=consumer_tag,
            no_ack=no_ack,
            exclusive=exclusive,
            arguments=as_table(arguments),
        )
        try:
            await self._call(method, commands.Basic.ConsumeOk)
        except BaseException:
            self._consumers.pop(consumer_tag, None)
            raise
        return consumer

    async def cancel_consumer(self, consumer: Consumer) -> None:
        """Cancel ``consumer`` (basic.cancel) and requeue messages it buffered. Idempotent."""
        consumer.end()
        if self._consumers.get(consumer.tag) is not consumer or not self.is_open:
            return
        await self._call(commands.Basic.Cancel(consumer.tag), commands.Basic.CancelOk)
        del self._consumers[consumer.tag]
        if not consumer.no_ack and self.is_open:
            for message in consumer.take_unconsumed():
                self._writer.write(codec.encode_reject(self.number, message.delivery_tag, True))

    async def get(self, queue: str, no_ack: bool = False) -> Message | None:
        """Fetch one message with basic.get; None when the queue is empty."""
        method = commands.Basic.Get(queue=queue, no_ack=no_ack)
        return await self._call(method, _GetOk, context=no_ack)

    async def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Acknowledge a delivery (or, with ``multiple``, all up to it)."""
        await self._gate()
        self._writer.write(codec.encode_ack(self.number, delivery_tag, multiple))

    async def nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        """Reject deliveries with basic.nack (RabbitMQ extension)."""
        await self._gate()
        self._writer.write(codec.encode_nack(self.number, delivery_tag, multiple, requeue))

    async def reject(self, delivery_tag: int, requeue: bool = True) -> None:
        """Reject one delivery with basic.reject."""
        await self._gate()
        self._writer.write(codec.encode_reject(self.number, delivery_tag, requeue))

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<ClientChannel {self.number} {state}>"
