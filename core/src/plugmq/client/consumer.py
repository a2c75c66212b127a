"""Consumers: the deliveries of one basic.consume as an async iterator.

The connection's reader appends deliveries synchronously (it never waits on a slow consumer,
which would stall every channel of the connection, confirms included). The buffer is therefore
bounded by the channel's prefetch (``basic_qos`` or ``consume(prefetch=...)``), not here: a
``no_ack`` consumer without prefetch buffers whatever the broker sends.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import trio

from plugmq.client.errors import ClosedError
from plugmq.client.message import Message

if TYPE_CHECKING:
    from plugmq.client.channel import ClientChannel

#: A full scheduler checkpoint every this many messages taken from a non-empty buffer, so
#: a consumer that never waits still lets the writer flush its acks and the reader read.
_YIELD_EVERY = 32


class Consumer:
    """Deliveries for one consumer tag, iterated with ``async for``.

    Iteration ends when the consumer is cancelled (by leaving ``ch.consume(...)``, by
    :meth:`cancel`, or by the broker with basic.cancel, e.g. when its queue is deleted) once
    the buffered messages are taken. It raises :class:`ChannelClosed`/:class:`ConnectionClosed`
    if the channel or connection fails.
    """

    def __init__(self, channel: ClientChannel, tag: str, no_ack: bool) -> None:
        self.channel = channel
        self.tag = tag
        self.no_ack = no_ack
        #: True once the broker cancelled the consumer (basic.cancel).
        self.cancelled_by_broker = False
        self._buffer: deque[Message] = deque()
        self._waiter: trio.Event | None = None
        self._ended = False
        self._error: ClosedError | None = None
        self._taken = 0

    def deliver(self, message: Message) -> None:
        """Buffer a delivery (called by the reader)."""
        self._buffer.append(message)
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def end(self, error: ClosedError | None = None) -> None:
        """Stop iteration after the buffer is drained, raising ``error`` if given."""
        self._ended = True
        if error is not None and self._error is None:
            self._error = error
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    @property
    def buffered(self) -> int:
        """Messages received and not yet taken: how many ``async for`` returns without waiting
        (federation gathers them to journal their keys as one record)."""
        return len(self._buffer)

    def take_unconsumed(self) -> list[Message]:
        """Remove and return the buffered messages (for requeueing on cancel)."""
        messages = list(self._buffer)
        self._buffer.clear()
        return messages

    async def cancel(self) -> None:
        """Cancel the consumer at the broker (basic.cancel); iteration then ends."""
        await self.channel.cancel_consumer(self)

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Message:
        """The next message; waits while none is buffered."""
        buffer = self._buffer
        if buffer:  # checkpoint before taking, so a cancelled caller loses no message
            self._taken += 1
            if self._taken % _YIELD_EVERY:
                await trio.lowlevel.checkpoint_if_cancelled()
            else:
                await trio.lowlevel.checkpoint()
        while not buffer:
            if self._error is not None:
                raise self._error.again()
            if self._ended:
                raise StopAsyncIteration
            waiter = self._waiter
            if waiter is None:  # several tasks may iterate one consumer
                waiter = self._waiter = trio.Event()
            await waiter.wait()
        return buffer.popleft()

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} buffered={len(self._buffer)} ended={self._ended}>"
