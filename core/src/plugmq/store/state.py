"""The state that journal records describe, folded in memory.

:class:`StoredState` applies records and yields the records that rebuild it, in the order the
store contract requires. The memory store uses it as its whole storage; other stores may use it
to check themselves, or to compact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from plugmq.store.records import (
    BindingAdded,
    BindingIdentity,
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

QueueKey = tuple[str, str]


class StoredState(RecordHandler):
    """Durable entities and messages, as the journal records left them.

    :meth:`apply` (from :class:`RecordHandler`) folds one record into the state.
    """

    def __init__(self) -> None:
        self.config: dict[tuple[str, str], object] = {}
        self.exchanges: dict[QueueKey, ExchangeDeclared] = {}
        self.queues: dict[QueueKey, QueueDeclared] = {}
        self.bindings: dict[BindingIdentity, BindingAdded] = {}
        self.messages: dict[QueueKey, dict[int, MessageEnqueued]] = {}

    def on_config_set(self, record: ConfigSet) -> None:
        key = (record.namespace, record.key)
        if record.value is None:
            self.config.pop(key, None)
        else:
            self.config[key] = record.value

    def on_exchange_declared(self, record: ExchangeDeclared) -> None:
        self.exchanges[(record.vhost, record.name)] = record

    def on_exchange_deleted(self, record: ExchangeDeleted) -> None:
        self.exchanges.pop((record.vhost, record.name), None)
        self._drop_bindings(record.vhost, record.name, kinds=("exchange",), as_source=True)

    def on_queue_declared(self, record: QueueDeclared) -> None:
        key = (record.vhost, record.name)
        self.queues[key] = record
        self.messages.setdefault(key, {})

    def on_queue_deleted(self, record: QueueDeleted) -> None:
        key = (record.vhost, record.name)
        self.queues.pop(key, None)
        self.messages.pop(key, None)
        self._drop_bindings(record.vhost, record.name, kinds=("queue",), as_source=False)

    def on_queue_purged(self, record: QueuePurged) -> None:
        messages = self.messages.get((record.vhost, record.name), {})
        for message_id in [i for i in messages if i > record.after_message_id]:
            del messages[message_id]

    def on_binding_added(self, record: BindingAdded) -> None:
        self.bindings[binding_identity(record)] = record

    def on_binding_removed(self, record: BindingRemoved) -> None:
        self.bindings.pop(binding_identity(record), None)

    def on_message_enqueued(self, record: MessageEnqueued) -> None:
        self.messages.setdefault((record.vhost, record.queue), {})[record.message_id] = record

    def on_message_removed(self, record: MessageRemoved) -> None:
        self.messages.get((record.vhost, record.queue), {}).pop(record.message_id, None)

    def _drop_bindings(
        self, vhost: str, name: str, kinds: tuple[str, ...], as_source: bool
    ) -> None:
        for key, binding in list(self.bindings.items()):
            if binding.vhost != vhost:
                continue
            if (as_source and binding.source == name) or (
                binding.destination == name and binding.destination_kind in kinds
            ):
                del self.bindings[key]

    def mark_delivered(self, vhost: str, queue: str, message_ids: Sequence[int]) -> None:
        """Flag messages as delivered, so they are recovered with ``redelivered=True``."""
        messages = self.messages.get((vhost, queue), {})
        for message_id in message_ids:
            record = messages.get(message_id)
            if record is not None and not record.redelivered:
                messages[message_id] = replace(record, redelivered=True)

    def read_queue(
        self, vhost: str, queue: str, after_message_id: int, limit: int
    ) -> list[MessageEnqueued]:
        """Up to ``limit`` messages of a queue with ids above ``after_message_id``, oldest first."""
        messages = self.messages.get((vhost, queue), {})
        ids = sorted(i for i in messages if i > after_message_id)[:limit]
        return [messages[i] for i in ids]

    def records(self) -> Iterator[Record]:
        """Records that rebuild this state, in the order the store contract requires."""
        for (namespace, key), value in self.config.items():
            yield ConfigSet(namespace, key, value)
        yield from self.exchanges.values()
        yield from self.queues.values()
        yield from self.bindings.values()
        for messages in self.messages.values():
            for message_id in sorted(messages):
                yield messages[message_id]
