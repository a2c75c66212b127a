"""Messages received from the broker (deliveries, basic.get results, returns)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pamqp import commands

from plugmq.amqp.content import decode_properties
from plugmq.client.errors import AMQPClientError

if TYPE_CHECKING:
    from plugmq.client.channel import ClientChannel


class Message:
    """One received message.

    ``header_payload`` is the content header exactly as received; ``properties`` decodes it on
    first access (most consumers never look, and pamqp decoding costs ~10 µs).
    ``message_count`` is set for basic.get results (messages left in the queue), else None.
    """

    __slots__ = (
        "_channel",
        "_properties",
        "body",
        "consumer_tag",
        "delivery_tag",
        "exchange",
        "header_payload",
        "message_count",
        "redelivered",
        "routing_key",
    )

    def __init__(
        self,
        channel: ClientChannel | None,
        body: bytes,
        header_payload: bytes,
        exchange: str,
        routing_key: str,
        delivery_tag: int = 0,
        redelivered: bool = False,
        consumer_tag: str | None = None,
        message_count: int | None = None,
    ) -> None:
        self._channel = channel
        self._properties: commands.Basic.Properties | None = None
        self.body = body
        self.header_payload = header_payload
        self.exchange = exchange
        self.routing_key = routing_key
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.consumer_tag = consumer_tag
        self.message_count = message_count

    @property
    def properties(self) -> commands.Basic.Properties:
        """The content properties (pamqp ``Basic.Properties``), decoded once on demand."""
        if self._properties is None:
            self._properties = decode_properties(self.header_payload)
        return self._properties

    async def ack(self, multiple: bool = False) -> None:
        """Acknowledge this message (and, with ``multiple``, every earlier one)."""
        await self._acking_channel().ack(self.delivery_tag, multiple)

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        """Reject this message (and, with ``multiple``, every earlier one) via basic.nack."""
        await self._acking_channel().nack(self.delivery_tag, multiple, requeue)

    async def reject(self, requeue: bool = True) -> None:
        """Reject this message via basic.reject."""
        await self._acking_channel().reject(self.delivery_tag, requeue)

    def _acking_channel(self) -> ClientChannel:
        if self._channel is None:
            raise AMQPClientError("this message was received with no_ack; it cannot be acked")
        return self._channel

    def __repr__(self) -> str:
        return (
            f"<Message exchange={self.exchange!r} routing_key={self.routing_key!r} "
            f"delivery_tag={self.delivery_tag} body={len(self.body)} bytes>"
        )


class ReturnedMessage(Message):
    """A mandatory message the broker could not route, sent back with basic.return."""

    __slots__ = ("reply_code", "reply_text")

    def __init__(
        self,
        body: bytes,
        header_payload: bytes,
        exchange: str,
        routing_key: str,
        reply_code: int,
        reply_text: str,
    ) -> None:
        super().__init__(None, body, header_payload, exchange, routing_key)
        self.reply_code = reply_code
        self.reply_text = reply_text

    def __repr__(self) -> str:
        return (
            f"<ReturnedMessage {self.reply_code} {self.reply_text} exchange={self.exchange!r}"
            f" routing_key={self.routing_key!r}>"
        )
