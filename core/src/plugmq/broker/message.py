"""Messages as the broker holds them: the publisher's bytes, kept as they arrived."""

from __future__ import annotations

from typing import Any

from plugmq.amqp.content import decode_properties, peek_header
from plugmq.amqp.methods import shortstr
from plugmq.broker.expiry import parse_expiration
from plugmq.store.records import MessageEnqueued


class Message:
    """One published message.

    ``header`` is the content-header payload exactly as published and ``exchange_and_key`` the
    exchange and routing key as encoded in basic.publish: basic.deliver reuses both bytes
    objects, so delivering a message encodes almost nothing. One Message object is shared by
    every queue it is routed to.
    """

    __slots__ = (
        "_headers",
        "body",
        "body_size",
        "confirm_channel",
        "confirm_tag",
        "exchange",
        "exchange_and_key",
        "expiration",
        "header",
        "id",
        "persistent",
        "priority",
        "redelivered",
        "routing_key",
        "ttl",
        "unwritten_copies",
    )

    def __init__(
        self,
        message_id: int,
        exchange: str,
        routing_key: str,
        exchange_and_key: bytes,
        header: bytes,
        body: bytes,
        delivery_mode: int = 1,
        priority: int = 0,
        expiration: str | None = None,
    ) -> None:
        self.id = message_id
        self.exchange = exchange
        self.routing_key = routing_key
        self.exchange_and_key = exchange_and_key
        self.header = header
        self.body = body
        self.body_size = len(body)
        self.persistent = delivery_mode == 2
        self.priority = priority
        self.expiration = expiration
        #: The ``expiration`` property in milliseconds (406 at publish when it is invalid).
        self.ttl = None if expiration is None else parse_expiration(expiration)
        self._headers: Any = _UNDECODED
        #: Copies in durable queues whose enqueue record may still be cancelled (not yet
        #: handed to the store writer); when they all are, the publish can be confirmed.
        self.unwritten_copies = 0
        #: The publisher's channel while it waits to confirm this message, else None.
        self.confirm_channel: Any = None
        #: The publish's sequence number on that channel (the tag its confirm carries).
        self.confirm_tag = 0
        #: Delivered with ``redelivered`` set from the first delivery on: a message that may
        #: have reached a consumer before (a federation link's resend it cannot prove new).
        self.redelivered = False

    @classmethod
    def from_record(cls, record: MessageEnqueued) -> Message:
        """Rebuild a message read back from the store (recovery, paging in)."""
        summary = peek_header(record.header)
        return cls(
            record.message_id,
            record.exchange,
            record.routing_key,
            shortstr(record.exchange) + shortstr(record.routing_key),
            record.header,
            record.body,
            summary.delivery_mode,
            summary.priority,
            summary.expiration,
        )

    @property
    def headers(self) -> dict[str, Any] | None:
        """The AMQP ``headers`` property, decoded on first use (headers exchange, DLX)."""
        if self._headers is _UNDECODED:
            self._headers = decode_properties(self.header).headers
        return self._headers

    def __repr__(self) -> str:
        return f"<Message {self.id} {self.exchange!r}/{self.routing_key!r} {self.body_size}B>"


_UNDECODED = object()
