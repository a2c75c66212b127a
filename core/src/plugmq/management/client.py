"""The requesting side of the management protocol, on :mod:`plugmq.client` (used by the CLI).

::

    async with management_client(["amqp://guest:guest@localhost:5672/"]) as admin:
        await admin.call("queue.add", name="abc", durable=True)
        queues = await admin.call("queue.list")

Responses come back by direct reply-to (``amq.rabbitmq.reply-to``): the client consumes from
the pseudo-queue and names it in ``reply_to``, so it declares no queue and needs no configure
permission, only write on the default exchange. A broker that does not announce the
``direct_reply_to`` capability (an older plugmq) gets a private exclusive reply queue
instead. Requests are published ``mandatory`` so a vhost without the management service is
reported at once (basic.return) instead of waiting for a timeout.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from plugmq.client import ClientChannel, ClosedError, ReturnedMessage, connect
from plugmq.client.consumer import Consumer
from plugmq.client.message import Message
from plugmq.management import protocol

DEFAULT_TIMEOUT = 10.0
#: RabbitMQ's direct reply-to pseudo-queue.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class ManagementError(Exception):
    """The broker refused a request, or did not answer it; the message says why."""


class ManagementClient:
    """Sends requests and waits for their responses. Create it with :func:`management_client`."""

    def __init__(self, channel: ClientChannel, reply_queue: str, user: str, timeout: float) -> None:
        self._channel = channel
        self._reply_queue = reply_queue
        self._user = user
        self._timeout = timeout
        self._inbox_send, self._inbox = trio.open_memory_channel[Message](64)
        self._closed: ClosedError | None = None

    def on_return(self, message: ReturnedMessage) -> None:
        """basic.return of a request: nobody serves management in this vhost."""
        if self._closed is None:
            self._inbox_send.send_nowait(message)

    async def pump(self, consumer: Consumer) -> None:
        """Move responses from the reply consumer to the inbox (a task of the client).

        When the channel closes (say 403: no write permission), the inbox is closed and the
        waiting call raises :class:`ManagementError` with the broker's reason.
        """
        try:
            async for message in consumer:
                await self._inbox_send.send(message)
        except ClosedError as error:
            self._closed = error
        finally:
            self._inbox_send.close()

    async def call(self, command: str, **arguments: Any) -> Any:
        """Run ``command``; return its result or raise :class:`ManagementError`.

        Arguments that are None are left out (the broker applies its defaults).
        """
        correlation_id = uuid.uuid4().hex
        properties = {
            "reply_to": self._reply_queue,
            "correlation_id": correlation_id,
            "user_id": self._user,
            "content_type": protocol.CONTENT_TYPE,
        }
        body = protocol.encode_request(
            command, {k: v for k, v in arguments.items() if v is not None}
        )
        await self._channel.publish("", protocol.QUEUE, body, properties, mandatory=True)
        with trio.move_on_after(self._timeout):
            return self._result(await self._response(correlation_id))
        raise ManagementError(f"no response to '{command}' within {self._timeout:g} s")

    async def _response(self, correlation_id: str) -> Message:
        while True:
            try:
                message = await self._inbox.receive()
            except trio.EndOfChannel:
                raise ManagementError(f"the broker closed the channel: {self._closed}") from None
            if isinstance(message, ReturnedMessage):
                raise ManagementError(
                    f"no management service in this vhost ({message.reply_text} for queue "
                    f"'{protocol.QUEUE}')"
                )
            if message.properties.correlation_id == correlation_id:
                return message

    @staticmethod
    def _result(message: Message) -> Any:
        try:
            ok, value = protocol.decode_response(message.body)
        except protocol.ProtocolError as error:
            raise ManagementError(str(error)) from error
        if not ok:
            raise ManagementError(value)
        return value


@asynccontextmanager
async def management_client(
    urls: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, **options: Any
) -> AsyncIterator[ManagementClient]:
    """Connect (first reachable URL of ``urls``) and yield a :class:`ManagementClient`.

    ``options`` go to :func:`plugmq.client.connect` (``dialer_for``, ``connect_timeout``...).
    Connection errors are the client's (:class:`plugmq.client.ConnectionFailed`...).
    """
    async with connect(urls, **options) as connection:
        holder: list[ManagementClient] = []
        channel = await connection.open_channel(on_return=lambda m: holder[0].on_return(m))
        try:
            reply_to = await _reply_queue(channel, connection.server_properties)
            client = ManagementClient(channel, reply_to, connection.url.username, timeout)
            holder.append(client)
            consumer = await channel.start_consumer(reply_to, no_ack=True)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.pump, consumer)
                    yield client
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # The pump never raises: a one-member group is the block's own exception.
                if len(group.exceptions) != 1:
                    raise
                raise group.exceptions[0] from None
        finally:
            if channel.is_open:
                with trio.move_on_after(2):
                    await channel.close()


async def _reply_queue(channel: ClientChannel, server_properties: dict[str, Any]) -> str:
    """Where responses come back: direct reply-to when the broker offers it, else a queue."""
    capabilities = server_properties.get("capabilities") or {}
    if capabilities.get("direct_reply_to"):
        return DIRECT_REPLY_TO
    reply = await channel.queue_declare("", exclusive=True, auto_delete=True)
    return reply.name
