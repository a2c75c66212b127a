"""An AMQP channel on the broker side: methods, content assembly, deliveries, confirms.

Every handler runs synchronously on the connection's reader task. Errors are raised as
:mod:`plugmq.amqp.errors` exceptions and turned into channel.close or connection.close by the
connection, in one place.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp import methods as M
from plugmq.amqp.content import (
    REPLY_TO_BIT,
    REPLY_TO_BYTE,
    USER_ID_BIT,
    USER_ID_BYTE,
    peek_header,
    reply_to_span,
    user_id_of,
)
from plugmq.amqp.errors import (
    AccessRefused,
    AMQPError,
    ChannelNotOpen,
    NotAllowed,
    NotConfirmed,
    NotFound,
    NotImplemented_,
    PreconditionFailed,
    UnexpectedFrame,
)
from plugmq.broker import direct_reply
from plugmq.broker.direct_reply import ReplyConsumer
from plugmq.broker.message import Message
from plugmq.broker.queue import Consumer, Entry, Queue
from plugmq.broker.vhost import check_exchange_deletable

if TYPE_CHECKING:
    from plugmq.broker.connection import Connection
    from plugmq.broker.vhost import VHost

Unacked = tuple[Entry, Queue, Consumer | None]
#: Direct replies to a connection whose peer is not reading are dropped above this backlog.
REPLY_DROP_WATER = 8 << 20


def _index(method: type) -> int:
    return method.index  # type: ignore[attr-defined]


class Channel:
    """One open channel of a client connection."""

    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.vhost: VHost = connection.vhost
        #: This user's permissions in the vhost (shared, updated in place when they change).
        self.grant = connection.grant
        self._writable = self.grant.writable
        self.closing = False
        # content assembly
        self._publish: tuple[str, str, bool, bool, bytes] | None = None
        self._header: bytes = b""
        self._body_parts: list[bytes] = []
        self._body_remaining = 0
        self._delivery_mode = 1
        self._priority = 0
        self._expiration: str | None = None
        # consumers and deliveries
        self.consumers: dict[str, Consumer] = {}
        #: The direct reply-to consumer (at most one per channel, as RabbitMQ).
        self.reply_consumer: ReplyConsumer | None = None
        self.unacked: dict[int, Unacked] = {}
        self._delivery_tag = 0
        self.prefetch_count = 0  # default per-consumer limit (basic.qos global=false)
        self.global_prefetch = 0  # shared channel limit (basic.qos global=true)
        self._last_queue = ""
        #: While this channel deletes a queue: its own basic.cancel frames, sent after delete-ok.
        self._held_cancels: list[bytes] | None = None
        # publisher confirms and transactions
        self.confirm_mode = False
        self.tx_mode = False
        self._tx_publishes: list[tuple[Message, Any, bool]] = []
        self._tx_acks: list[Callable[[], None]] = []
        self._publish_seq = 0
        #: Publishes not yet confirmed, in tag order: (tag, journal sequence, message).
        self._waiting_confirms: deque[tuple[int, int, Message]] = deque()
        #: Tags settled while an earlier publish still waits for the store.
        self._early_confirms: list[int] = []
        #: True while a journal callback is registered for the oldest waiting publish.
        self._awaiting_durable = False
        self._confirmed_upto = 0
        self._confirms_sent_upto = 0
        #: Publish tags refused by a queue (reject-publish), to be nacked in order.
        self._nacked: deque[int] = deque()
        self.messages_published = 0

    def __repr__(self) -> str:
        return f"<Channel {self.number} of {self.connection!r}>"

    # -- frames -------------------------------------------------------------------------------

    def handle_method(self, payload: bytes) -> None:
        """Decode and run one method frame."""
        if self._publish is not None:
            raise UnexpectedFrame(
                f"expected content header for class 60, got a method frame on channel {self.number}"
            )
        index, args = M.decode_method(payload)
        if self.closing:
            if index == _CLOSE_OK:
                self.connection.forget_channel(self)
            elif index == _CLOSE:
                self.connection.send(M.encode_method(self.number, commands.Channel.CloseOk()))
            return
        handler = _HANDLERS.get(index)
        if handler is None:
            raise NotImplemented_(f"method {M.method_name(index)} is not supported", *_ids(index))
        try:
            handler(self, args)
        except AMQPError as error:
            # The close names the method that failed, whatever raised (RabbitMQ's rule): a
            # missing queue in basic.consume is 60/20, a headers binding error 50/20.
            error.class_id, error.method_id = _ids(index)
            raise

    def handle_header(self, payload: bytes) -> None:
        """A content header frame: must follow basic.publish."""
        if self._publish is None:
            if self.closing:  # spec 2.3.5: discarded until channel.close-ok (see handle_body)
                return
            raise UnexpectedFrame(f"content header on channel {self.number} without a publish")
        if self._header:
            # A second header would silently restart the body of the message being assembled.
            raise UnexpectedFrame(
                f"expected content body, got a content header on channel {self.number}"
            )
        summary = peek_header(payload)
        limit = self.connection.broker.max_message_size
        if summary.body_size > limit:
            self._publish = None
            raise PreconditionFailed(
                f"message size {summary.body_size} is larger than configured max size {limit}",
                60,
                40,
            )
        self._header = payload
        self._delivery_mode = summary.delivery_mode
        self._priority = summary.priority
        self._expiration = summary.expiration
        self._body_remaining = summary.body_size
        if summary.body_size == 0:
            self._complete_publish(b"")

    def handle_body(self, payload: bytes) -> None:
        """A content body frame: part of the message whose header came last."""
        if self._publish is None or not self._header:
            if self.closing:
                # Spec 2.3.5 (and RabbitMQ): after channel.close the broker discards every
                # frame but close/close-ok. A client that published before it saw the close
                # is still sending that content; it is not a protocol error. Checked only on
                # this error path, so a normal body costs nothing more.
                return
            raise UnexpectedFrame(f"content body on channel {self.number} without a header")
        self._body_remaining -= len(payload)
        if self._body_remaining < 0:
            raise UnexpectedFrame(f"content body on channel {self.number} exceeds body size")
        if self._body_remaining == 0:
            if self._body_parts:
                self._body_parts.append(payload)
                payload = b"".join(self._body_parts)
                self._body_parts = []
            self._complete_publish(payload)
        else:
            self._body_parts.append(payload)

    # -- publishing ----------------------------------------------------------------------------

    def _on_publish(self, args: tuple[str, str, bool, bool, bytes]) -> None:
        if args[3]:
            raise NotImplemented_("immediate=true", 60, 40)
        self._publish = args
        self._header = b""
        if not self.connection.is_publisher:
            self.connection.is_publisher = True
            if self.connection.broker.memory.alarm:
                self.connection.memory_alarm_changed(True)

    def _complete_publish(self, body: bytes) -> None:
        exchange, routing_key, mandatory, _, exchange_and_key = self._publish  # type: ignore[misc]
        header = self._header
        self._publish = None
        self._header = b""
        if exchange not in self._writable:  # the publish permission check: one set lookup
            self.grant.check_publish(exchange)
        if header[USER_ID_BYTE] & USER_ID_BIT:
            self._check_user_id(header)
        if header[REPLY_TO_BYTE] & REPLY_TO_BIT:
            header = self._direct_reply_to(header)
        broker = self.connection.broker
        message = Message(
            broker.next_message_id(),
            exchange,
            routing_key,
            exchange_and_key,
            header,
            body,
            self._delivery_mode,
            self._priority,
            self._expiration,
        )
        self.messages_published += 1
        queues = self.vhost.route(exchange, message)
        if self.tx_mode:
            self._tx_publishes.append((message, queues, mandatory))
            return
        seq = self._route(message, queues, mandatory)
        if self.confirm_mode:
            self._track_confirm(seq, message)

    def _check_user_id(self, header: bytes) -> None:
        """RabbitMQ's rule: a ``user_id`` property must name the authenticated user (406)."""
        user_id = user_id_of(header)
        user = self.connection.user
        if user_id is not None and user_id != user:
            raise PreconditionFailed(
                f"user_id property set to '{user_id}' but authenticated user was '{user}'", 60, 40
            )

    def _direct_reply_to(self, header: bytes) -> bytes:
        """Give a request's ``reply_to`` of ``amq.rabbitmq.reply-to`` this channel's reply name.

        As RabbitMQ (rabbit_channel:maybe_set_fast_reply_to): only a channel consuming from
        the pseudo-queue may publish such a request (406 otherwise). Other properties keep
        their bytes.
        """
        start, end = reply_to_span(header)
        if header[start:end] != direct_reply.PSEUDO_QUEUE_BYTES:
            return header
        consumer = self.reply_consumer
        if consumer is None:
            raise PreconditionFailed("fast reply consumer does not exist", 60, 40)
        return header[: start - 1] + M.shortstr(consumer.name) + header[end:]

    def _route(self, message: Message, queues: Any, mandatory: bool) -> int:
        if queues:
            return self.vhost.enqueue(queues, message)
        if mandatory:
            self.connection.send(
                M.encode_return(self.number, C.NO_ROUTE, "NO_ROUTE", message.exchange_and_key)
            )
            self.connection.send(
                M.encode_content(
                    self.number, message.header, message.body, self.connection.frame_max
                )
            )
        return 0

    def _track_confirm(self, journal_seq: int, message: Message) -> None:
        self._publish_seq += 1
        tag = self._publish_seq
        journal = self.vhost.journal
        if journal_seq < 0:  # VHost.REJECTED: a nack, sent in order with the acks
            self._nacked.append(tag)
        if journal_seq <= journal.durable_seq and not self._waiting_confirms:
            if journal.failures and journal.is_failed(journal_seq):
                self._nack_later(tag)
            self._confirmed_upto = tag
            self.connection.confirms_pending(self)
            return
        self._waiting_confirms.append((tag, journal_seq, message))
        if journal_seq > 0:
            message.confirm_channel = self
            message.confirm_tag = tag
        if not self._awaiting_durable:
            self._awaiting_durable = True
            journal.when_durable(journal_seq, self._on_durable)

    def _on_durable(self) -> None:
        """The journal reached the awaited publish: confirm what is due, await the next one.

        One callback per channel is registered at a time (not one per publish): publishes
        are awaited in order, so the oldest waiting one is all the journal needs to know.
        """
        self._awaiting_durable = False
        if self._advance_confirms() and not self.closing:
            self.flush_confirms()
        waiting = self._waiting_confirms
        if waiting and not self.closing:
            self._awaiting_durable = True
            self.vhost.journal.when_durable(waiting[0][1], self._on_durable)

    def message_settled(self, message: Message) -> None:
        """A message this channel waits to confirm was consumed before it reached the store.

        Called from the consumer's connection. The confirm need not wait for earlier publishes
        still on their way to the disk: it is sent alone (multiple=false) if it cannot be part
        of the in-order basic.ack, as RabbitMQ does. Confirms are sent by this connection's
        writer, so all acknowledgements handled in one pass share as few frames as possible.
        """
        if self.closing:
            return
        self._advance_confirms()
        if message.confirm_tag > self._confirmed_upto:
            self._early_confirms.append(message.confirm_tag)
        self.connection.confirms_due(self)

    def _advance_confirms(self) -> bool:
        """Move ``_confirmed_upto`` past the leading publishes that are durable or settled."""
        journal = self.vhost.journal
        durable = journal.durable_seq
        failures = journal.failures
        waiting = self._waiting_confirms
        advanced = False
        while waiting:
            tag, seq, message = waiting[0]
            if seq > durable and message.unwritten_copies:
                break
            waiting.popleft()
            message.confirm_channel = None
            if failures and journal.is_failed(seq):
                self._nack_later(tag)
            self._confirmed_upto = tag
            advanced = True
        return advanced

    def _nack_later(self, tag: int) -> None:
        """Nack publish ``tag`` in order with the acks (its record was not replicated)."""
        nacked = self._nacked
        if not nacked or nacked[-1] < tag:
            nacked.append(tag)
        elif tag not in nacked:
            self._nacked = deque(sorted([*nacked, tag]))

    def flush_confirms(self) -> None:
        """Send one basic.ack (multiple) covering every publish confirmed since the last.

        A refused publish gets its own basic.nack, and the acks around it are split so that
        no ack with multiple=true covers a nacked tag. Publishes settled out of order follow
        as single acks.
        """
        if self.closing:
            return
        upto = self._confirmed_upto
        if upto > self._confirms_sent_upto:
            if self._nacked:
                self._send_nacks(upto)
            if upto > self._confirms_sent_upto:
                self._confirms_sent_upto = upto
                self.connection.send(M.encode_ack(self.number, upto, True))
        if self._early_confirms:
            self._send_early_confirms()

    def _send_early_confirms(self) -> None:
        """Single acks for publishes settled out of order (a later multiple ack may repeat them)."""
        upto = self._confirms_sent_upto
        for tag in self._early_confirms:
            if tag > upto:
                self.connection.send(M.encode_ack(self.number, tag, False))
        self._early_confirms.clear()

    def _send_nacks(self, upto: int) -> None:
        nacked = self._nacked
        while nacked and nacked[0] <= upto:
            tag = nacked.popleft()
            if tag - 1 > self._confirms_sent_upto:
                self.connection.send(M.encode_ack(self.number, tag - 1, True))
            self.connection.send(M.encode_nack(self.number, tag, False))
            self._confirms_sent_upto = tag

    # -- deliveries (called by queues) ---------------------------------------------------------

    def can_deliver(self, consumer: Consumer) -> bool:
        """True when prefetch limits and the connection's output buffer allow a delivery."""
        if consumer.prefetch and consumer.unacked >= consumer.prefetch:
            return False
        if self.global_prefetch and len(self.unacked) >= self.global_prefetch:
            return False
        return self.connection.writable

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Send ``entry`` to ``consumer`` as basic.deliver plus content."""
        self._delivery_tag += 1
        tag = self._delivery_tag
        message = entry.message
        connection = self.connection
        connection.send(
            M.encode_deliver(
                self.number, consumer.tag_bytes, tag, entry.redelivered, message.exchange_and_key
            )
        )
        connection.send(
            M.encode_content(self.number, message.header, message.body, connection.frame_max)
        )
        if consumer.no_ack:
            consumer.queue.settle(entry)
        else:
            consumer.unacked += 1
            self._hold(tag, entry, consumer.queue, consumer)

    def _hold(self, tag: int, entry: Entry, queue: Queue, consumer: Consumer | None) -> None:
        """Keep a delivered entry until it is acked; tell the store it was delivered."""
        self.unacked[tag] = (entry, queue, consumer)
        if entry.stored and not entry.redelivered:
            self.vhost.journal.note_delivered(self.vhost.name, queue.name, entry.message.id)

    def deliver_reply(self, consumer: ReplyConsumer, message: Message) -> None:
        """Deliver a direct reply to this channel's reply consumer (no-ack, never buffered).

        Dropped when the consumer is gone, or when the requester's connection has not read
        several megabytes of output: replies are at most once, as RabbitMQ's, and must not
        grow the broker without bound.
        """
        connection = self.connection
        if self.reply_consumer is not consumer or self.closing:
            return
        if not connection.writable and connection.output_size > REPLY_DROP_WATER:
            consumer.dropped += 1
            return
        self._delivery_tag += 1
        connection.send(
            M.encode_deliver(
                self.number, consumer.tag_bytes, self._delivery_tag, False, message.exchange_and_key
            )
        )
        connection.send(
            M.encode_content(self.number, message.header, message.body, connection.frame_max)
        )

    def cancel_by_broker(self, consumer: Consumer) -> None:
        """The queue went away: drop the consumer and tell the client (basic.cancel)."""
        self.consumers.pop(consumer.tag, None)
        consumer.queue.remove_consumer(consumer)
        if self.connection.consumer_cancel_notify and not self.closing:
            frame = M.encode_method(
                self.number, commands.Basic.Cancel(consumer_tag=consumer.tag, nowait=True)
            )
            if self._held_cancels is not None:
                self._held_cancels.append(frame)
            else:
                self.connection.send(frame)

    # -- channel class -------------------------------------------------------------------------

    def _on_channel_close(self, args: commands.Channel.Close) -> None:
        self.release()
        self.connection.send(M.encode_method(self.number, commands.Channel.CloseOk()))
        self.connection.forget_channel(self)

    def _on_channel_close_ok(self, args: commands.Channel.CloseOk) -> None:
        raise ChannelNotOpen(f"channel.close-ok on channel {self.number} that is not closing")

    def _on_channel_flow(self, args: commands.Channel.Flow) -> None:
        if not args.active:
            raise NotImplemented_("active=false", 20, 20)
        self.connection.send(M.encode_method(self.number, commands.Channel.FlowOk(active=True)))

    def _on_channel_open(self, args: commands.Channel.Open) -> None:
        raise ChannelNotOpen(f"second 'channel.open' seen on channel {self.number}", 20, 10)

    def release(self) -> None:
        """Cancel consumers and requeue unacknowledged messages (channel closing)."""
        self.closing = True
        self._publish = None
        self._body_parts = []
        for consumer in list(self.consumers.values()):
            self._remove_consumer(consumer)
        self.consumers.clear()
        self._stop_replies()
        self._requeue_all()
        for _, _, message in self._waiting_confirms:
            message.confirm_channel = None
        self._waiting_confirms.clear()

    def _requeue_all(self) -> None:
        unacked = self.unacked
        self.unacked = {}
        self._requeue(list(unacked.values()))

    @staticmethod
    def _requeue(returned: list[Unacked]) -> None:
        """Give entries back to their queues in order (released if the queue is gone)."""
        by_queue: dict[Queue, list[Entry]] = {}
        for entry, queue, consumer in returned:
            if consumer is not None:
                consumer.unacked -= 1
            by_queue.setdefault(queue, []).append(entry)
        for queue, entries in by_queue.items():
            if queue.deleted:
                queue.forget(entries)
            else:
                queue.requeue(entries)

    # -- exchange class ------------------------------------------------------------------------

    def _on_exchange_declare(self, args: commands.Exchange.Declare) -> None:
        if not args.passive:
            self.grant.check("configure", "exchange", args.exchange, 40, 10)
        self.vhost.declare_exchange(
            args.exchange,
            args.exchange_type,
            passive=args.passive,
            durable=args.durable,
            auto_delete=args.auto_delete,
            internal=args.internal,
            arguments=args.arguments,
        )
        if not args.nowait:
            self._send_durably(commands.Exchange.DeclareOk())

    def _on_exchange_delete(self, args: commands.Exchange.Delete) -> None:
        check_exchange_deletable(args.exchange, self.vhost.name)
        self.grant.check("configure", "exchange", args.exchange, 40, 20)
        self.vhost.delete_exchange(args.exchange, if_unused=args.if_unused)
        if not args.nowait:
            self._send_durably(commands.Exchange.DeleteOk())

    def _on_exchange_bind(self, args: commands.Exchange.Bind) -> None:
        self.grant.check("write", "exchange", args.destination, 40, 30)
        self.grant.check("read", "exchange", args.source, 40, 30)
        destination = self.vhost.exchange_for_binding(args.destination, 40, 30)
        self.vhost.bind(args.source, destination, args.routing_key, args.arguments, 40, 30)
        if not args.nowait:
            self._send_durably(commands.Exchange.BindOk())

    def _on_exchange_unbind(self, args: commands.Exchange.Unbind) -> None:
        self.grant.check("write", "exchange", args.destination, 40, 40)
        self.grant.check("read", "exchange", args.source, 40, 40)
        destination = self.vhost.exchange_for_binding(args.destination, 40, 40, missing_ok=True)
        self.vhost.unbind(args.source, destination, args.routing_key, args.arguments, 40, 40)
        if not args.nowait:
            self._send_durably(commands.Exchange.UnbindOk())

    # -- queue class ---------------------------------------------------------------------------

    def _on_queue_declare(self, args: commands.Queue.Declare) -> None:
        name = args.queue or ""
        if direct_reply.is_reply_name(name):
            self._declare_reply_queue(name, args.nowait)
            return
        server_named = not name and not args.passive
        if server_named:
            name = "amq.gen-" + secrets.token_urlsafe(16)
        if not args.passive:
            self.grant.check("configure", "queue", name, 50, 10)
        queue = self.vhost.declare_queue(
            name,
            owner=self.connection,
            passive=args.passive,
            durable=args.durable,
            exclusive=args.exclusive,
            auto_delete=args.auto_delete,
            arguments=args.arguments,
            server_named=server_named,
        )
        self._last_queue = queue.name
        if not args.nowait:
            self._send_durably(
                M.encode_queue_declare_ok(
                    self.number, queue.name, queue.message_count, queue.consumer_count
                )
            )

    def _declare_reply_queue(self, name: str, nowait: bool) -> None:
        """Every declare of a direct reply-to name is passive (RabbitMQ's rule).

        The pseudo-queue always exists; a reply name exists while its consumer does, with
        0 messages and 1 consumer: a responder may check that its requester is still there.
        """
        if name != direct_reply.PSEUDO_QUEUE and name not in self.vhost.reply_consumers:
            raise NotFound(f"no queue '{name}' in vhost '{self.vhost.name}'", 50, 10)
        if not nowait:
            self._send(commands.Queue.DeclareOk(queue=name, message_count=0, consumer_count=1))

    def _queue_named(self, name: str, method_id: int, class_id: int = 50) -> Queue:
        return self.vhost.get_queue(name or self._last_queue, self.connection, class_id, method_id)

    def _on_queue_bind(self, args: commands.Queue.Bind) -> None:
        self.grant.check("write", "queue", args.queue or self._last_queue, 50, 20)
        self.grant.check("read", "exchange", args.exchange, 50, 20)
        queue = self._queue_named(args.queue, 20)
        routing_key = args.routing_key if (args.queue or args.routing_key) else queue.name
        self.vhost.bind(args.exchange, queue, routing_key, args.arguments, 50, 20)
        if not args.nowait:
            self._send_durably(commands.Queue.BindOk())

    def _on_queue_unbind(self, args: commands.Queue.Unbind) -> None:
        """queue.unbind; a queue, exchange or binding that is gone is not an error.

        RabbitMQ 3.x (rabbit_binding:remove) answers unbind-ok then: an auto-delete queue
        may vanish before its client unbinds it.
        """
        name = args.queue or self._last_queue
        self.grant.check("write", "queue", name, 50, 50)
        self.grant.check("read", "exchange", args.exchange, 50, 50)
        queue = self.vhost.queues.get(name)
        if queue is not None:
            self.vhost.check_exclusive_access(queue, self.connection, 50, 50)
        self.vhost.unbind(args.exchange, queue, args.routing_key, args.arguments, 50, 50)
        self._send_durably(commands.Queue.UnbindOk())

    def _on_queue_purge(self, args: commands.Queue.Purge) -> None:
        self.grant.check("read", "queue", args.queue or self._last_queue, 50, 30)
        count = self._queue_named(args.queue, 30).purge()
        if not args.nowait:
            self._send_durably(commands.Queue.PurgeOk(message_count=count))

    def _on_queue_delete(self, args: commands.Queue.Delete) -> None:
        name = args.queue or self._last_queue
        self.grant.check("configure", "queue", name, 50, 40)
        queue = self.vhost.queues.get(name)
        count, cancels = 0, b""
        if queue is not None:
            self.vhost.check_exclusive_access(queue, self.connection, 50, 40)
            if args.if_unused and queue.consumer_count:
                raise PreconditionFailed(
                    f"queue '{name}' in vhost '{self.vhost.name}' in use", 50, 40
                )
            if args.if_empty and queue.message_count:
                raise PreconditionFailed(
                    f"queue '{name}' in vhost '{self.vhost.name}' not empty", 50, 40
                )
            count, cancels = self._delete_holding_cancels(queue)
        if args.nowait:
            if cancels:
                self.connection.send(cancels)
            return
        reply = M.encode_method(self.number, commands.Queue.DeleteOk(message_count=count))
        self._send_durably(reply + cancels)

    def _delete_holding_cancels(self, queue: Queue) -> tuple[int, bytes]:
        """Delete ``queue``; return its message count and this channel's basic.cancel frames.

        The deleting channel gets queue.delete-ok before the cancels of its own consumers
        (RabbitMQ's order; clients such as aio-pika wait for the reply first), so they are
        held back here and sent right after the reply.
        """
        self._held_cancels = []
        try:
            count = self.vhost.delete_queue(queue)
        finally:
            held, self._held_cancels = self._held_cancels, None
        return count, b"".join(held)

    # -- basic class ---------------------------------------------------------------------------

    def _on_basic_qos(self, args: commands.Basic.Qos) -> None:
        if args.prefetch_size:
            raise NotImplemented_(f"prefetch_size!=0 ({args.prefetch_size})", 60, 10)
        if args.global_:
            self.global_prefetch = args.prefetch_count
        else:
            self.prefetch_count = args.prefetch_count
        self._send(commands.Basic.QosOk())
        for consumer in list(self.consumers.values()):
            consumer.queue.dispatch()

    def _on_basic_consume(self, args: commands.Basic.Consume) -> None:
        if args.queue == direct_reply.PSEUDO_QUEUE:
            self._consume_replies(args)
            return
        self.grant.check("read", "queue", args.queue or self._last_queue, 60, 20)
        queue = self._queue_named(args.queue, 20, 60)
        tag = args.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
        if tag in self.consumers or (self.reply_consumer and self.reply_consumer.tag == tag):
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'", 60, 20)
        for existing in queue.consumers:
            if existing.exclusive or args.exclusive:
                raise AccessRefused(
                    f"queue '{queue.name}' in vhost '{self.vhost.name}' in exclusive use", 60, 20
                )
        consumer = Consumer(
            self, queue, tag, args.no_ack, args.exclusive, self.prefetch_count, args.arguments
        )
        self.consumers[tag] = consumer
        if not args.nowait:
            self._send(commands.Basic.ConsumeOk(consumer_tag=tag))
        queue.add_consumer(consumer)  # fires consumer_added

    def _consume_replies(self, args: commands.Basic.Consume) -> None:
        """basic.consume from ``amq.rabbitmq.reply-to``, with RabbitMQ's checks and codes."""
        tag = args.consumer_tag or "amq.ctag-" + secrets.token_urlsafe(16)
        if tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'", 60, 20)
        if not args.no_ack:
            raise PreconditionFailed("reply consumer cannot acknowledge", 60, 20)
        if self.reply_consumer is not None:
            raise PreconditionFailed("reply consumer already set", 60, 20)
        consumer = self.reply_consumer = ReplyConsumer(self, tag)
        self.vhost.reply_consumers[consumer.name] = consumer
        if not args.nowait:
            self._send(commands.Basic.ConsumeOk(consumer_tag=tag))

    def _stop_replies(self) -> None:
        consumer, self.reply_consumer = self.reply_consumer, None
        if consumer is not None:
            self.vhost.reply_consumers.pop(consumer.name, None)

    def _on_basic_cancel(self, args: commands.Basic.Cancel) -> None:
        reply_consumer = self.reply_consumer
        if reply_consumer is not None and reply_consumer.tag == args.consumer_tag:
            self._stop_replies()
        consumer = self.consumers.pop(args.consumer_tag, None)
        if not args.nowait:
            self._send(commands.Basic.CancelOk(consumer_tag=args.consumer_tag))
        if consumer is not None:
            self._remove_consumer(consumer)

    def _remove_consumer(self, consumer: Consumer) -> None:
        queue = consumer.queue
        queue.remove_consumer(consumer)  # fires consumer_removed
        if queue.unused_after_consumers and not queue.deleted:
            self.vhost.delete_queue(queue)

    def _on_basic_get(self, args: commands.Basic.Get) -> None:
        self.grant.check("read", "queue", args.queue or self._last_queue, 60, 70)
        queue = self._queue_named(args.queue, 70, 60)
        entry = queue.get()
        if entry is None and queue.paged:
            self.connection.broker.spawn(lambda: self._get_after_paging(queue, args.no_ack))
            return
        self._answer_get(queue, entry, args.no_ack)

    async def _get_after_paging(self, queue: Queue, no_ack: bool) -> None:
        """basic.get found only paged-out messages: answer once some are back in memory."""
        await queue.wait_paged_in()
        if not self.closing:
            self._answer_get(queue, queue.get(), no_ack)

    def _answer_get(self, queue: Queue, entry: Entry | None, no_ack: bool) -> None:
        if entry is None:
            self._send(commands.Basic.GetEmpty())
            return
        self._delivery_tag += 1
        tag = self._delivery_tag
        message = entry.message
        self.connection.send(
            M.encode_get_ok(
                self.number, tag, entry.redelivered, message.exchange_and_key, queue.message_count
            )
        )
        self.connection.send(
            M.encode_content(self.number, message.header, message.body, self.connection.frame_max)
        )
        if no_ack:
            queue.settle(entry)
        else:
            self._hold(tag, entry, queue, None)

    def _on_basic_ack(self, args: tuple[int, bool]) -> None:
        settled = self._take_unacked(args[0], args[1], 80)
        if self.tx_mode:
            self._tx_acks.append(lambda: self._settle(settled))
        else:
            self._settle(settled)

    def _on_basic_reject(self, args: tuple[int, bool]) -> None:
        tag, requeue = args
        self._reject(self._take_unacked(tag, False, 90), requeue)

    def _on_basic_nack(self, args: tuple[int, bool, bool]) -> None:
        tag, multiple, requeue = args
        self._reject(self._take_unacked(tag, multiple, 120), requeue)

    def _take_unacked(self, tag: int, multiple: bool, method_id: int) -> list[Unacked]:
        unacked = self.unacked
        if not multiple:
            taken = unacked.pop(tag, None)
            if taken is None:
                raise PreconditionFailed(f"unknown delivery tag {tag}", 60, method_id)
            return [taken]
        if tag == 0:
            taken_all = list(unacked.values())
            unacked.clear()
            return taken_all
        if tag not in unacked:
            raise PreconditionFailed(f"unknown delivery tag {tag}", 60, method_id)
        taken_list = []
        while unacked:
            first = next(iter(unacked))
            if first > tag:
                break
            taken_list.append(unacked.pop(first))
        return taken_list

    def _settle(self, settled: list[Unacked]) -> None:
        queues: set[Queue] = set()
        for entry, queue, consumer in settled:
            queue.settle(entry)
            if consumer is not None:
                consumer.unacked -= 1
                queues.add(queue)
        for queue in queues:
            queue.dispatch()

    def _reject(self, rejected: list[Unacked], requeue: bool) -> None:
        if requeue:
            self._requeue(rejected)
        else:
            self._dead_letter(rejected)

    def _dead_letter(self, rejected: list[Unacked]) -> None:
        """Rejected without requeue: dead-lettered (reason ``rejected``) where a DLX is set."""
        queues: set[Queue] = set()
        for entry, queue, consumer in rejected:
            queue.discard(entry, "rejected")
            if consumer is not None:
                consumer.unacked -= 1
                queues.add(queue)
        for queue in queues:
            queue.dispatch()

    def _on_basic_recover(self, args: commands.Basic.Recover) -> None:
        if not args.requeue:
            raise NotImplemented_("requeue=false", 60, 110)
        self._requeue_all()
        self._send(commands.Basic.RecoverOk())

    def _on_basic_recover_async(self, args: commands.Basic.RecoverAsync) -> None:
        if not args.requeue:
            raise NotImplemented_("requeue=false", 60, 100)
        self._requeue_all()

    # -- confirm and tx classes ----------------------------------------------------------------

    def _on_confirm_select(self, args: commands.Confirm.Select) -> None:
        if self.tx_mode:
            raise PreconditionFailed("cannot switch from tx to confirm mode", C.CONFIRM, 10)
        self.confirm_mode = True
        if not args.nowait:
            self._send(commands.Confirm.SelectOk())

    def _on_tx_select(self, args: commands.Tx.Select) -> None:
        if self.confirm_mode:
            raise PreconditionFailed("cannot switch from confirm to tx mode", C.TX, 10)
        self.tx_mode = True
        self._send(commands.Tx.SelectOk())

    def _on_tx_commit(self, args: commands.Tx.Commit) -> None:
        if not self.tx_mode:
            raise PreconditionFailed("channel is not transactional", C.TX, 20)
        publishes, acks = self._tx_publishes, self._tx_acks
        self._tx_publishes, self._tx_acks = [], []
        for message, queues, mandatory in publishes:
            self._route(message, queues, mandatory)
        for settle in acks:
            settle()
        # commit-ok only once every record of this transaction (publishes and acks) is durable.
        seq = self.vhost.journal.last_seq
        self.vhost.journal.when_durable(seq, lambda: self._commit_ok(seq))

    def _commit_ok(self, seq: int) -> None:
        if self.closing:
            return
        journal = self.vhost.journal
        if journal.failures and journal.is_failed(seq):
            # The transaction's records are on the local disk but not replicated: the client
            # must not believe it committed (RabbitMQ closes the channel on a failed commit).
            self.connection.close_channel(
                self, NotConfirmed("transaction not replicated to a quorum", C.TX, 20)
            )
            return
        self._send(commands.Tx.CommitOk())

    def _on_tx_rollback(self, args: commands.Tx.Rollback) -> None:
        if not self.tx_mode:
            raise PreconditionFailed("channel is not transactional", C.TX, 30)
        self._tx_publishes = []
        self._tx_acks = []
        self._send(commands.Tx.RollbackOk())

    # -- helpers -------------------------------------------------------------------------------

    def _send(self, method: Any) -> None:
        self.connection.send(M.encode_method(self.number, method))

    def _send_durably(self, reply: Any) -> None:
        """Send a declare/delete/bind reply once every journal record so far is durable.

        A client that got queue.declare-ok for a durable queue may rely on it surviving a
        crash (RabbitMQ replies after its commit). Replies stay in order: the journal runs
        callbacks in sequence order, and while one reply waits every later one waits too.
        """
        frame = reply if isinstance(reply, bytes) else M.encode_method(self.number, reply)
        journal = self.vhost.journal
        if journal.last_seq <= journal.durable_seq:
            self.connection.send(frame)
        else:
            journal.when_durable(journal.last_seq, lambda: self._send_if_open(frame))

    def _send_if_open(self, frame: bytes) -> None:
        if not self.closing:
            self.connection.send(frame)


def _ids(index: int) -> tuple[int, int]:
    return index >> 16, index & 0xFFFF


_CLOSE = _index(commands.Channel.Close)
_CLOSE_OK = _index(commands.Channel.CloseOk)

_HANDLERS: dict[int, Callable[[Channel, Any], None]] = {
    M.BASIC_PUBLISH: Channel._on_publish,
    M.BASIC_ACK: Channel._on_basic_ack,
    M.BASIC_NACK: Channel._on_basic_nack,
    M.BASIC_REJECT: Channel._on_basic_reject,
    _index(commands.Basic.Qos): Channel._on_basic_qos,
    _index(commands.Basic.Consume): Channel._on_basic_consume,
    _index(commands.Basic.Cancel): Channel._on_basic_cancel,
    _index(commands.Basic.Get): Channel._on_basic_get,
    _index(commands.Basic.Recover): Channel._on_basic_recover,
    _index(commands.Basic.RecoverAsync): Channel._on_basic_recover_async,
    _CLOSE: Channel._on_channel_close,
    _CLOSE_OK: Channel._on_channel_close_ok,
    _index(commands.Channel.Flow): Channel._on_channel_flow,
    _index(commands.Channel.Open): Channel._on_channel_open,
    _index(commands.Exchange.Declare): Channel._on_exchange_declare,
    _index(commands.Exchange.Delete): Channel._on_exchange_delete,
    _index(commands.Exchange.Bind): Channel._on_exchange_bind,
    _index(commands.Exchange.Unbind): Channel._on_exchange_unbind,
    _index(commands.Queue.Declare): Channel._on_queue_declare,
    _index(commands.Queue.Bind): Channel._on_queue_bind,
    _index(commands.Queue.Unbind): Channel._on_queue_unbind,
    _index(commands.Queue.Purge): Channel._on_queue_purge,
    _index(commands.Queue.Delete): Channel._on_queue_delete,
    _index(commands.Confirm.Select): Channel._on_confirm_select,
    _index(commands.Tx.Select): Channel._on_tx_select,
    _index(commands.Tx.Commit): Channel._on_tx_commit,
    _index(commands.Tx.Rollback): Channel._on_tx_rollback,
}
