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
)

QueueKey = tuple[str, str]


class StoredState:
    """Durable entities and messages, as the journal records left them."""

    def __init__(self) -> None:
        self.config: dict[tuple[str, str], object] = {}
        self.exchanges: dict[QueueKey, ExchangeDeclared] = {}
        self.queues: dict[QueueKey, QueueDeclared] = {}
        self.bindings: dict[tuple, BindingAdded] = {}
        self.messages: dict[QueueKey, dict[int, MessageEnqueued]] = {}

    def apply(self, record: Record) -> None:
        """Fold one record into the state."""
        handler = getattr(self, "_apply_" + type(record).__name__)
        handler(record)

    def _apply_ConfigSet(self, record: ConfigSet) -> None:
        key = (record.namespace, record.key)
        if record.value is None:
            self.config.pop(key, None)
        else:
            self.config[key] = record.value

    def _apply_ExchangeDeclared(self, record: ExchangeDeclared) -> None:
        self.exchanges[(record.vhost, record.name)] = record

    def _apply_ExchangeDeleted(self, record: ExchangeDeleted) -> None:
        self.exchanges.pop((record.vhost, record.name), None)
        self._drop_bindings(record.vhost, record.name, kinds=("exchange",), as_source=True)

    def _apply_QueueDeclared(self, record: QueueDeclared) -> None:
        key = (record.vhost, record.name)
        self.queues[key] = record
        self.messages.setdefault(key, {})

    def _apply_QueueDeleted(self, record: QueueDeleted) -> None:
        key = (record.vhost, record.name)
        self.queues.pop(key, None)
        self.messages.pop(key, None)
        self._drop_bindings(record.vhost, record.name, kinds=("queue",), as_source=False)

    def _apply_QueuePurged(self, record: QueuePurged) -> None:
        messages = self.messages.get((record.vhost, record.name), {})
        for message_id in [i for i in messages if i > record.after_message_id]:
            del messages[message_id]

    def _apply_BindingAdded(self, record: BindingAdded) -> None:
        self.bindings[_binding_key(record)] = record

    def _apply_BindingRemoved(self, record: BindingRemoved) -> None:
        self.bindings.pop(_binding_key(record), None)

    def _apply_MessageEnqueued(self, record: MessageEnqueued) -> None:
        self.messages.setdefault((record.vhost, record.queue), {})[record.message_id] = record

    def _apply_MessageRemoved(self, record: MessageRemoved) -> None:
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


def _binding_key(record: BindingAdded | BindingRemoved) -> tuple:
    return (
        record.vhost,
        record.source,
        record.destination,
        record.destination_kind,
        record.routing_key,
        repr(sorted(record.arguments.items())),
    )
