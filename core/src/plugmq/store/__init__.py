"""The store contract (records and the :class:`Store` protocol) and the in-memory default."""

from plugmq.store.base import NotReplicated, Store, StoreError
from plugmq.store.records import (
    BindingAdded,
    BindingRemoved,
    ConfigSet,
    ExchangeDeclared,
    ExchangeDeleted,
    MessageEnqueued,
    MessageRemoved,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
    Record,
    RecordHandler,
    binding_identity,
)

__all__ = [
    "BindingAdded",
    "BindingRemoved",
    "ConfigSet",
    "ExchangeDeclared",
    "ExchangeDeleted",
    "MessageEnqueued",
    "MessageRemoved",
    "NotReplicated",
    "QueueDeclared",
    "QueueDeleted",
    "QueuePurged",
    "Record",
    "RecordHandler",
    "Store",
    "StoreError",
    "binding_identity",
]
