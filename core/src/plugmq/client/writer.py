"""Batching outgoing frames onto a stream.

Channels append encoded frames synchronously (no await on the hot path); one writer task per
connection sends everything that accumulated since its last send in a single ``send_all``.
So frames produced in the same scheduler tick (a burst of publishes, a run of acks) leave in
one write, while a lone frame still leaves as soon as the writer task runs. Producers wait in
:meth:`FrameWriter.wait_writable` only when the backlog passes ``high_water``.
"""

from __future__ import annotations

import trio

from plugmq.client.errors import ConnectionClosed

Part = bytes | memoryview


class FrameWriter:
    """The outgoing side of one AMQP connection."""

    def __init__(self, stream: trio.abc.Stream, high_water: int = 1 << 20) -> None:
        self._stream = stream
        self._parts: list[Part] = []
        self._size = 0
        self._wakeup = trio.Event()
        self._drained = trio.lowlevel.ParkingLot()
        self._error: ConnectionClosed | None = None
        self.high_water = high_water
        #: trio.current_time() of the last completed send (for idle heartbeats).
        self.last_send = trio.current_time()

    @property
    def backlog(self) -> int:
        """Bytes queued and not yet handed to the stream."""
        return self._size

    def write(self, data: Part) -> None:
        """Queue one encoded frame (or several, already joined)."""
        self._check()
        self._parts.append(data)
        self._size += len(data)
        self._wakeup.set()

    def write_parts(self, parts: list[Part]) -> None:
        """Queue a list of parts (one message's frames, say)."""
        self._check()
        self._parts += parts
        self._size += sum(map(len, parts))
        self._wakeup.set()

    async def wait_writable(self) -> None:
        """Wait until the backlog is below ``high_water`` (back-pressure for producers)."""
        while self._size > self.high_water:
            self._check()
            await self._drained.park()
        self._check()

    async def run(self) -> None:
        """Send queued frames until cancelled; a failing stream raises out of here."""
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._flush()

    async def drain(self) -> None:
        """Wait until everything queued so far has been handed to the stream."""
        while self._size:
            self._check()
            await self._drained.park()

    async def _flush(self) -> None:
        parts, self._parts = self._parts, []
        data = b"".join(parts) if len(parts) != 1 else parts[0]
        await self._stream.send_all(data)
        self._size -= len(data)
        self.last_send = trio.current_time()
        self._drained.unpark_all()

    def fail(self, error: ConnectionClosed) -> None:
        """Refuse further writes with ``error`` and release producers waiting for room."""
        if self._error is None:
            self._error = error
        self._drained.unpark_all()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error.again()
