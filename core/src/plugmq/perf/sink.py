"""A trivial fake broker that measures the benchmark tool's own ceiling.

It speaks just enough AMQP 0-9-1 for the tool's workers: the connection handshake, channel
open/close, and ``-ok`` replies to the setup methods they send. Everything a producer
publishes is read and dropped (frame headers are walked, content is never looked at). A
``basic.consume`` starts a flood of deliveries on that channel, sent as fast as the consumer
reads them, at most ``basic.qos`` prefetch unacknowledged (acks are only counted). So a
producer's rate against the sink is the most the tool can publish, and a consumer's rate the
most it can consume. A ``no_ack`` consumer would have no bound and buffer without limit, so
the ceiling scenario measures consuming with manual acks only.

Run it with :func:`sink_main` in its own process (``python -m plugmq.perf.sink`` prints the
port it listens on).
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import struct
import sys

import trio
from pamqp import commands

from plugmq.amqp import constants as C
from plugmq.amqp import methods

_FRAME_MAX = 131072
_HEADER = struct.Struct(">BHI")
_BATCH = 256

_REPLIES: dict[type, object] = {
    commands.Channel.Open: commands.Channel.OpenOk(),
    commands.Confirm.Select: commands.Confirm.SelectOk(),
    commands.Queue.Bind: commands.Queue.BindOk(),
    commands.Queue.Delete: commands.Queue.DeleteOk(0),
    commands.Exchange.Declare: commands.Exchange.DeclareOk(),
}


class _Flood:
    """Deliveries to one consumer, at most ``prefetch`` unacknowledged (0: no limit)."""

    def __init__(self, channel: int, consumer_tag: str, size: int, prefetch: int) -> None:
        self.channel = channel
        self.tag = methods.shortstr(consumer_tag)
        self.route = methods.shortstr("amq.direct") + methods.shortstr("sink")
        header = struct.pack(">HHQH", C.BASIC, 0, size, 0)
        self.content = methods.encode_content(channel, header, b"s" * size, _FRAME_MAX)
        self.prefetch = prefetch
        self.sent = 0
        self.acked = 0
        self.scope = trio.CancelScope()
        self.acks = trio.Event()

    def on_ack(self, tag: int) -> None:
        if tag > self.acked:
            self.acked = tag
            self.acks.set()

    def batch(self) -> bytes:
        """The next deliveries allowed now (empty when the prefetch window is full)."""
        count = _BATCH
        if self.prefetch:
            count = min(count, self.prefetch - (self.sent - self.acked))
        parts = []
        for number in range(self.sent + 1, self.sent + 1 + max(count, 0)):
            parts.append(methods.encode_deliver(self.channel, self.tag, number, False, self.route))
            parts.append(self.content)
        self.sent += max(count, 0)
        return b"".join(parts)


class _SinkConnection:
    def __init__(self, stream: trio.SocketStream, size: int) -> None:
        self.stream = stream
        self.size = size
        self.send_lock = trio.Lock()
        self.floods: dict[int, _Flood] = {}
        self.prefetch: dict[int, int] = {}
        self.publishes = 0

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data)

    async def reply(self, channel: int, method: object) -> None:
        await self.send(methods.encode_method(channel, method))

    async def run(self, nursery: trio.Nursery) -> None:
        header = b""
        while len(header) < 8:
            chunk = await self.stream.receive_some(8 - len(header))
            if not chunk:
                return
            header += chunk
        start = commands.Connection.Start(
            server_properties={
                "product": "plugmq-perf-sink",
                "version": "0",
                "capabilities": {"publisher_confirms": True, "basic.nack": True},
            },
            mechanisms="PLAIN",
            locales="en_US",
        )
        await self.reply(0, start)
        await self.read_frames(nursery)

    async def read_frames(self, nursery: trio.Nursery) -> None:
        """Walk frame headers; count publishes, skip content, answer other methods.

        Content frames are skipped by their size without being copied, so reading stays far
        cheaper than producing and the sink is never what limits a producer.
        """
        buffer = bytearray()
        head = _HEADER.unpack_from
        index_of = struct.Struct(">I").unpack_from
        publish = methods.BASIC_PUBLISH
        ignored = (methods.BASIC_NACK, methods.BASIC_REJECT)
        ack = methods.BASIC_ACK
        tag_of = struct.Struct(">Q").unpack_from
        while True:
            data = await self.stream.receive_some(256 * 1024)
            if not data:
                return
            buffer += data
            position, available = 0, len(buffer)
            while available - position >= 8:
                frame_type, channel, size = head(buffer, position)
                end = position + 7 + size
                if end >= available:
                    break
                if frame_type == C.FRAME_METHOD:
                    index = index_of(buffer, position + 7)[0]
                    if index == publish:
                        self.publishes += 1
                    elif index == ack:
                        flood = self.floods.get(channel)
                        if flood is not None:
                            flood.on_ack(tag_of(buffer, position + 11)[0])
                    elif index not in ignored:
                        payload = bytes(buffer[position + 7 : end])
                        method = methods.decode_method(payload)[1]
                        if not await self.on_method(nursery, channel, method):
                            return
                position = end + 1
            del buffer[:position]

    async def on_method(self, nursery: trio.Nursery, channel: int, method: object) -> bool:
        """Answer a setup method; False when the connection is closed."""
        if isinstance(method, commands.Connection.StartOk):
            await self.reply(0, commands.Connection.Tune(2047, _FRAME_MAX, 0))
        elif isinstance(method, commands.Connection.Open):
            await self.reply(0, commands.Connection.OpenOk())
        elif isinstance(method, commands.Connection.Close):
            await self.reply(0, commands.Connection.CloseOk())
            return False
        elif isinstance(method, commands.Channel.Close):
            self.stop_flood(channel)
            await self.reply(channel, commands.Channel.CloseOk())
        elif isinstance(method, commands.Queue.Declare):
            await self.reply(channel, commands.Queue.DeclareOk(method.queue or "sink", 0, 0))
        elif isinstance(method, commands.Basic.Consume):
            tag = method.consumer_tag or "sink"
            await self.reply(channel, commands.Basic.ConsumeOk(tag))
            prefetch = 0 if method.no_ack else self.prefetch.get(channel, 0)
            flood = self.floods[channel] = _Flood(channel, tag, self.size, prefetch)
            nursery.start_soon(self.flood, flood)
        elif isinstance(method, commands.Basic.Qos):
            self.prefetch[channel] = method.prefetch_count
            await self.reply(channel, commands.Basic.QosOk())
        elif isinstance(method, commands.Basic.Cancel):
            self.stop_flood(channel)
            await self.reply(channel, commands.Basic.CancelOk(method.consumer_tag))
        elif type(method) in _REPLIES:
            await self.reply(channel, _REPLIES[type(method)])
        return True

    def stop_flood(self, channel: int) -> None:
        flood = self.floods.pop(channel, None)
        if flood is not None:
            flood.scope.cancel()

    async def flood(self, flood: _Flood) -> None:
        with flood.scope:
            while True:
                data = flood.batch()
                if data:
                    await self.send(data)
                else:
                    flood.acks = trio.Event()
                    await flood.acks.wait()


async def serve(port: int, size: int, task_status: trio.TaskStatus[int]) -> None:
    """Serve the sink on 127.0.0.1:``port`` (0: any free port); report the port via start()."""

    async def handle(stream: trio.SocketStream) -> None:
        connection = _SinkConnection(stream, size)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            async with trio.open_nursery() as nursery:
                await connection.run(nursery)
                nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


def sink_main(size: int, pipe: multiprocessing.connection.Connection | None = None) -> None:
    """Process entry point: serve forever; send the port over ``pipe`` (or print it)."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, 0, size)
            if pipe is not None:
                pipe.send(port)
                pipe.close()
            else:
                print(port, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)


if __name__ == "__main__":
    sink_main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
