"""The memory alarm: RabbitMQ's high watermark, counted in message bytes the broker holds.

Queues add a message's body size when it is enqueued and subtract it when the message is
settled, dropped or its queue deleted. Counting bytes the broker is responsible for, rather than
sampling the process RSS, costs two integer operations per message and clears the alarm as soon
as consumers catch up (Python rarely returns freed memory to the OS, so RSS would stay high).

Above the watermark, publishing connections get connection.blocked and the broker stops reading
from them; below it, connection.unblocked and reading resumes — as RabbitMQ does.

Plugins raise the same alarm for their own reasons (``broker.block_publishers(name, reason)``:
an HA master below its quorum must not accept persistent publishes it could not keep); the
alarm is on while memory is over the limit or any named reason stands, and the hot path still
reads one attribute.
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

    __slots__ = ("_blocks", "_listeners", "_memory_was_over", "alarm", "cleared", "limit", "used")

    def __init__(self, limit: int) -> None:
        #: Bytes of message bodies held (ready or unacknowledged). 0 limit = no alarm.
        self.used = 0
        self.limit = limit if limit > 0 else 1 << 62
        self.alarm = False
        self.cleared = trio.Event()
        self.cleared.set()
        self._listeners: list[Callable[[bool], None]] = []
        #: Reasons plugins gave to block publishers, by name.
        self._blocks: dict[str, str] = {}
        self._memory_was_over = False

    def add(self, size: int) -> None:
        """A message of ``size`` bytes is now held."""
        self.used += size
        if self.used > self.limit and not self.alarm:
            self._set(True)

    def remove(self, size: int) -> None:
        """A message of ``size`` bytes is no longer held."""
        self.used -= size
        if self.alarm and self.used <= self.limit and not self._blocks:
            self._set(False)

    def block(self, name: str, reason: str) -> None:
        """Raise the alarm for ``name`` (a plugin's own reason) until :meth:`unblock`."""
        self._blocks[name] = reason
        if not self.alarm:
            self._set(True)

    def unblock(self, name: str) -> None:
        """Withdraw ``name``'s reason; the alarm clears when no reason is left."""
        withdrawn = self._blocks.pop(name, None) is not None
        if withdrawn and self.alarm and not self._blocks and self.used <= self.limit:
            self._set(False)

    @property
    def reason(self) -> str:
        """Why publishers are blocked (sent in connection.blocked)."""
        if self.used > self.limit:
            return "low on memory"
        return "; ".join(self._blocks.values()) or "low on memory"

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(alarm)`` whenever the alarm is raised or cleared."""
        self._listeners.append(listener)

    def _set(self, alarm: bool) -> None:
        self.alarm = alarm
        # The memory alarm keeps RabbitMQ's names; a plugin's reason is named as what it is.
        blocked_by_plugin = bool(self._blocks) if alarm else self.used <= self.limit
        if blocked_by_plugin and (alarm or not self._memory_was_over):
            name = "publishers_blocked" if alarm else "publishers_unblocked"
        else:
            name = "memory_alarm" if alarm else "memory_alarm_cleared"
        self._memory_was_over = self.used > self.limit
        log.warning(name, used=self.used, limit=self.limit, reason=self.reason if alarm else None)
        if alarm:
            self.cleared = trio.Event()
        else:
            self.cleared.set()
        for listener in self._listeners:
            listener(alarm)
