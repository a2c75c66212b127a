"""plugmq's trio AMQP 0-9-1 client, built on the project's own sans-IO codec.

Used by the admin CLI, federation links, HA replication, the benchmark tool and the tests::

    from plugmq.client import connect

    async with connect(["amqp://guest:guest@127.0.0.1:5672/", "amqp://h2:5672/"]) as conn:
        async with conn.channel() as ch:
            await ch.queue_declare("jobs", durable=True)
            await ch.confirm_select()
            await ch.publish_confirmed("", "jobs", b"hello", {"delivery_mode": 2})
            async with ch.consume("jobs", prefetch=100) as consumer:
                async for message in consumer:
                    await message.ack()
                    break

Transports are pluggable: ``amqp://`` uses TCP; other schemes (``amqp+rdma://``) are resolved
through ``dialers=`` / ``dialer_for=`` (for instance the ``plugmq_dialer`` hook).
"""

from plugmq.client.channel import ClientChannel
from plugmq.client.connection import ClientConnection, connect
from plugmq.client.consumer import Consumer
from plugmq.client.errors import (
    AMQPClientError,
    ChannelClosed,
    ClosedError,
    ConnectionClosed,
    ConnectionFailed,
    PublishNacked,
)
from plugmq.client.message import Message, ReturnedMessage
from plugmq.client.operations import QueueDeclareOk
from plugmq.client.tcp import TCPDialer
from plugmq.client.urls import BrokerURL, parse_url

__all__ = [
    "AMQPClientError",
    "BrokerURL",
    "ChannelClosed",
    "ClientChannel",
    "ClientConnection",
    "ClosedError",
    "ConnectionClosed",
    "ConnectionFailed",
    "Consumer",
    "Message",
    "PublishNacked",
    "QueueDeclareOk",
    "ReturnedMessage",
    "TCPDialer",
    "connect",
    "parse_url",
]
