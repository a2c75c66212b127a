"""What the store shares with the HA strategy and the broker: the epoch, and outage reports.

One :class:`Link` per broker, made by ``plugmq_configure`` and kept on the broker's
:class:`~plugmq.config.Config` (``config.pg_link``), because the store (made by
``plugmq_store(config)``) and the strategy (``plugmq_ha_strategy(config)``) are built apart
and the store never sees the broker.

* ``guard``: set by ``--ha pg``. Every store transaction checks in the database that the lock
  row still carries :attr:`EpochGuard.epoch`; a deposed master's writes are refused there.
* ``broker``: set while master by the plugin's service, so the store's worker thread can block
  publishers (``connection.blocked``) while PostgreSQL is unreachable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import structlog
import trio

log = structlog.get_logger("plugmq.store_pg")

BLOCK_NAME = "store_pg"


@dataclass
class EpochGuard:
    """The mastership this broker holds: its epoch and how long its lease is valid."""

    epoch: int = 0
    #: Monotonic time until which the lease is surely ours (0: not master).
    valid_until: float = 0.0
    #: Called (on the writer thread) when the database refused a write of this epoch.
    deposed: list[str] = field(default_factory=list)

    def valid(self, margin: float = 0.0) -> bool:
        """True while the lease holds for at least ``margin`` more seconds."""
        return self.valid_until - margin > time.monotonic()


@dataclass
class Link:
    """Per-broker state shared by the store, the HA strategy and the plugin's service."""

    guard: EpochGuard | None = None
    broker: Any = None
    outage: str | None = None
    #: Outages seen so far (for ``plugmq stat``-style reports and tests).
    outages: int = 0

    def unreachable(self, reason: str) -> None:
        """From the store's worker thread: PostgreSQL is unreachable; block publishers."""
        if self.outage is None:
            self.outage = reason
            self.outages += 1
            self._call("block_publishers", BLOCK_NAME, f"PostgreSQL unreachable: {reason}")

    def reachable(self) -> None:
        """From the store's worker thread: PostgreSQL answers again; unblock."""
        if self.outage is not None:
            self.outage = None
            self._call("unblock_publishers", BLOCK_NAME)

    def _call(self, method: str, *args: Any) -> None:
        broker = self.broker
        if broker is None:
            return
        try:
            trio.from_thread.run_sync(getattr(broker, method), *args)
        except RuntimeError:
            # Not on a trio worker thread (a store used outside a broker): nothing to block.
            log.debug("pg_block_skipped", method=method)

    def __repr__(self) -> str:  # shown in the start-up log of every flag
        epoch = self.guard.epoch if self.guard else None
        return f"Link(ha={self.guard is not None}, epoch={epoch})"
