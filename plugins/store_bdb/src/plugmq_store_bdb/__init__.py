"""plugmq plugin: a Berkeley DB message store (durable queues, persistent messages)."""

from plugmq_store_bdb.store import BDBStore

__all__ = ["BDBStore"]
