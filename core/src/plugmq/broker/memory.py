"""The memory alarm: RabbitMQ's high watermark, counted in message bytes the broker holds.

Queues add a message's body size when it is enqueued and subtract it when the message is
settled, dropped or its queue deleted. Counting bytes the broker is responsible for, rather than
sampling the process RSS, costs two integer operations per message and clears the alarm as soon
as consumers catch up (Python rarely returns freed memory to the OS, so RSS would stay high).

Above the watermark, publishing connections get connection.blocked and the broker stops reading
from them; below it, connection.unblocked and reading resumes — as RabbitMQ does.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import structlog
import trio

log = structlog.get_logger("plugmq.memory")


def watermark_bytes(setting: float) -> int:
    """Bytes for a ``--memory-high-watermark`` value: a fraction of RAM (<= 1) or bytes."""
    if setting <= 0:
        return 0
    if setting <= 1:
        return int(setting * _total_memory())
    return int(setting)


def _total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class MemoryMonitor:
    """Counts held message bytes and raises/clears the alarm around ``limit``."""

    __slots__ = ("_listeners", "alarm", "cleared", "limit", "used")

    def __init__(self, limit: int) -> None:
        #: Bytes of message bodies held (ready or unacknowledged). 0 limit = no alarm.
        self.used = 0
        self.limit = limit if limit > 0 else 1 << 62
        self.alarm = False
        self.cleared = trio.Event()
        self.cleared.set()
        self._listeners: list[Callable[[bool], None]] = []

    def add(self, size: int) -> None:
        """A message of ``size`` bytes is now held."""
        self.used += size
        if self.used > self.limit and not self.alarm:
            self._set(True)

    def remove(self, size: int) -> None:
        """A message of ``size`` bytes is no longer held."""
        self.used -= size
        if self.alarm and self.used <= self.limit:
            self._set(False)

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(alarm)`` whenever the alarm is raised or cleared."""
        self._listeners.append(listener)

    def _set(self, alarm: bool) -> None:
        self.alarm = alarm
        log.warning(
            "memory_alarm" if alarm else "memory_alarm_cleared", used=self.used, limit=self.limit
        )
        if alarm:
            self.cleared = trio.Event()
        else:
            self.cleared.set()
        for listener in self._listeners:
            listener(alarm)
