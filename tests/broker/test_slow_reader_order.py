"""Deliveries to a consumer that reads slowly arrive whole and in order.

The broker sends a connection's output directly at the end of a batch when the socket takes
it and leaves the rest to the connection's writer task; a reader that lets its socket fill
makes both paths (and the pause above the delivery high-water mark) take part. Every frame
must still come in order, none split into or mixed with another.
"""

from __future__ import annotations

import socket
import uuid

import pika
from pamqp import commands
from support import raw_amqp as raw
from support.broker_process import BrokerProcess

#: 10 MB in all: more than the sockets hold, far above the 1 MiB delivery high-water mark.
COUNT = 200
SIZE = 50_000


def body(number: int) -> bytes:
    return number.to_bytes(4, "big") * (SIZE // 4)


def read_delivery(sock: socket.socket) -> tuple[int, bytes]:
    """The next basic.deliver's delivery tag and whole body."""
    channel, deliver = raw.read_method(sock, commands.Basic.Deliver)
    assert channel == 1
    _, header = raw.read_frame(sock)
    received = b""
    while len(received) < header.body_size:
        _, frame = raw.read_frame(sock)
        received += frame.value
    return deliver.delivery_tag, received


def test_deliveries_to_a_slow_reader_arrive_whole_and_in_order(
    shared_broker: BrokerProcess,
) -> None:
    queue = f"slow-reader-{uuid.uuid4().hex}"
    with pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", shared_broker.port)
    ) as publisher:
        channel = publisher.channel()
        channel.queue_declare(queue)
        with raw.connect(shared_broker.port) as sock:
            # small, yet above twice loopback's MSS (a smaller window stalls TCP for seconds)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
            raw.handshake(sock)
            raw.open_channel(sock, 1)
            raw.send_method(sock, 1, commands.Basic.Consume(queue=queue, no_ack=True))
            raw.read_method(sock, commands.Basic.ConsumeOk)
            for number in range(COUNT):
                channel.basic_publish("", queue, body(number))
            channel.queue_declare(queue, passive=True)  # every publish above is routed
            for number in range(COUNT):
                assert read_delivery(sock) == (number + 1, body(number))
        channel.queue_delete(queue)
