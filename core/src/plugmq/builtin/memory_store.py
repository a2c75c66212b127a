"""Built-in plugin: the in-memory store, chosen with ``--store memory``.

``--store`` itself is registered by whichever store plugin is loaded; without any store plugin
the flag does not exist and the memory store is the only choice.
"""

from __future__ import annotations

from plugmq.config import Config
from plugmq.hookspecs import hookimpl
from plugmq.store.base import Store
from plugmq.store.memory import MemoryStore


@hookimpl(trylast=True)
def plugmq_store(config: Config) -> Store | None:
    """The memory store when it is the one asked for (or the only one there is)."""
    if config.get("store", "memory") == "memory":
        return MemoryStore()
    return None
