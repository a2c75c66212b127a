"""Publisher confirms: sequence numbers, the broker's acks and nacks, and who waits for them.

The broker confirms by delivery tag, possibly ``multiple`` (everything up to the tag) and not
necessarily in order across queues. Outstanding numbers live in a dict (O(1) single confirms)
plus a deque in publish order (O(1) amortised ``multiple`` confirms and "lowest outstanding");
numbers confirmed out of order are dropped lazily from the deque's front.
"""

from __future__ import annotations

from collections import deque

import trio

from plugmq.client.errors import AMQPClientError, ClosedError, PublishNacked


class _Waiter:
    """One task waiting for the confirm of one sequence number."""

    __slots__ = ("event", "nacked")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.nacked = False


class ConfirmTracker:
    """The confirm state of one channel in confirm mode."""

    def __init__(self) -> None:
        self.next_seq = 1
        self._pending: dict[int, _Waiter | None] = {}
        self._order: deque[int] = deque()
        self._nacked: list[int] = []
        self._changed = trio.lowlevel.ParkingLot()
        self._error: ClosedError | None = None

    @property
    def outstanding(self) -> int:
        """How many published messages are not confirmed yet."""
        return len(self._pending)

    def add(self, waited: bool = False) -> int:
        """Register the next publish; return its sequence number."""
        seq = self.next_seq
        self.next_seq = seq + 1
        self._pending[seq] = _Waiter() if waited else None
        self._order.append(seq)
        return seq

    def confirm(self, tag: int, multiple: bool, nacked: bool) -> None:
        """Apply a basic.ack (``nacked`` False) or basic.nack from the broker."""
        if multiple:
            order, pending = self._order, self._pending
            while order and order[0] <= tag:
                seq = order.popleft()
                if seq in pending:
                    self._resolve(seq, nacked)
        elif tag in self._pending:
            self._resolve(tag, nacked)
        self._changed.unpark_all()

    def _resolve(self, seq: int, nacked: bool) -> None:
        waiter = self._pending.pop(seq)
        if waiter is None:
            if nacked:
                self._nacked.append(seq)
            return
        waiter.nacked = nacked
        waiter.event.set()

    def fail(self, error: ClosedError) -> None:
        """The channel closed: every waiter gets ``error``."""
        self._error = error
        for waiter in self._pending.values():
            if waiter is not None:
                waiter.event.set()
        self._changed.unpark_all()

    async def wait_for(self, seq: int) -> None:
        """Wait for the confirm of ``seq`` (registered with ``waited=True``).

        Raises :class:`PublishNacked` on a nack, the channel's error if it closes first.
        """
        waiter = self._pending.get(seq)
        if waiter is None:
            raise AMQPClientError(f"publish {seq} is not awaitable (already confirmed?)")
        await waiter.event.wait()
        if waiter.nacked:
            raise PublishNacked([seq])
        if seq in self._pending and self._error is not None:
            raise self._error.again()

    async def wait_all(self) -> None:
        """Wait until everything published so far is confirmed.

        Raises :class:`PublishNacked` naming the nacked numbers not reported before.
        """
        target = self.next_seq - 1
        while self._lowest_outstanding() <= target:
            if self._error is not None:
                raise self._error.again()
            await self._changed.park()
        nacked = [seq for seq in self._nacked if seq <= target]
        if nacked:
            self._nacked = [seq for seq in self._nacked if seq > target]
            raise PublishNacked(nacked)
        await trio.lowlevel.checkpoint()

    def _lowest_outstanding(self) -> int:
        order = self._order
        while order and order[0] not in self._pending:
            order.popleft()
        return order[0] if order else self.next_seq
