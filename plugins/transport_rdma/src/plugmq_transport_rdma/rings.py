"""Which registered buffer a completion belongs to (sans-IO).

pyverbs 44's ``CMID.post_send``/``post_recv`` cannot set a work-request id, so completions do not
say which buffer they are for. They do not need to: on one reliable-connected queue pair,
receive completions arrive in the order receives were posted, and send completions in the order
sends were posted. These rings keep those orders.
"""

from __future__ import annotations

from collections import deque


class RingError(Exception):
    """A completion arrived for a buffer that was never posted (a bug or a broken device)."""


class SendRing:
    """Send buffers: free ones, and the posted ones in completion order."""

    def __init__(self, buffers: int) -> None:
        self._free: deque[int] = deque(range(buffers))
        self._posted: deque[int] = deque()
        self.size = buffers

    def free(self) -> int:
        """How many send buffers can be filled now."""
        return len(self._free)

    def in_flight(self) -> int:
        """How many sends are posted and not yet completed."""
        return len(self._posted)

    def acquire(self) -> int:
        """Take a free buffer to fill and post."""
        if not self._free:
            raise RingError("no free send buffer")
        slot = self._free.popleft()
        self._posted.append(slot)
        return slot

    def complete(self) -> int:
        """A send completed: the oldest posted buffer is free again."""
        if not self._posted:
            raise RingError("send completion with nothing posted")
        slot = self._posted.popleft()
        self._free.append(slot)
        return slot


class RecvRing:
    """Receive buffers in the order they were posted (all of them are posted at start)."""

    def __init__(self, buffers: int) -> None:
        self._posted: deque[int] = deque(range(buffers))
        self.size = buffers

    def posted(self) -> int:
        """How many receive buffers are posted."""
        return len(self._posted)

    def complete(self) -> int:
        """A receive completed: it filled the oldest posted buffer."""
        if not self._posted:
            raise RingError("receive completion with nothing posted")
        return self._posted.popleft()

    def repost(self, slot: int) -> None:
        """``slot`` was posted again."""
        self._posted.append(slot)
