"""A test plugin: a durable in-memory store whose writes wait while a gate file exists.

Loaded with ``--no-autoload --load-module transport_tcp --load-module <this file>``. While
``--gate-file`` exists, :meth:`GatedStore.apply` blocks (and touches ``<gate>.waiting`` so the
test knows the journal's writer is stuck); the test removes the file to let writes through.
This makes "what the broker does before a record is on disk" observable from outside.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from plugmq.config import Config, OptionRegistry
from plugmq.hookspecs import hookimpl
from plugmq.store import StoreError
from plugmq.store.memory import MemoryStore
from plugmq.store.records import Record

#: apply() gives up (and the broker stops) if the gate stays closed this long.
GATE_LIMIT = 60.0


class GatedStore(MemoryStore):
    """A MemoryStore that claims durability and holds each batch while the gate is closed."""

    name = "gated"
    durable = True

    def __init__(self, gate: Path) -> None:
        super().__init__()
        self.gate = gate

    def apply(self, records: Sequence[Record]) -> None:
        """Wait while the gate file exists, then apply the batch."""
        deadline = time.monotonic() + GATE_LIMIT
        if self.gate.exists():
            self.gate.with_suffix(".waiting").touch()
        while self.gate.exists():
            if time.monotonic() > deadline:
                raise StoreError(f"the test gate {self.gate} stayed closed")
            time.sleep(0.01)
        super().apply(records)


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """Register ``--gate-file``."""
    options.add("--gate-file", type=str, default="", help="Writes wait while this file exists.")


@hookimpl(tryfirst=True)
def plugmq_store(config: Config) -> GatedStore:
    """The gated store."""
    return GatedStore(Path(config.gate_file))
