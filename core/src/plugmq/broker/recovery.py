"""Rebuilding virtual hosts, exchanges, queues, bindings and messages from the store.

The store is read in a worker thread in chunks; each chunk is applied on the trio thread, so
plugins' control-plane hooks run where they always run. Progress is logged for large stores.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

import structlog
import trio

from plugmq.access import NAMESPACES as ACCESS_NAMESPACES
from plugmq.access import VHOST
from plugmq.amqp.content import peek_header
from plugmq.broker.message import Message
from plugmq.store import records

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker

log = structlog.get_logger("plugmq.recovery")

CHUNK = 20_000


async def recover_into(broker: Broker) -> int:
    """Apply the store's records to ``broker``; return the highest message id seen."""
    started = time.monotonic()
    records_iter = iter(broker.store.recover(_ProgressLog()))
    applier = _Applier(broker)
    while True:
        chunk = await trio.to_thread.run_sync(lambda: list(itertools.islice(records_iter, CHUNK)))
        if not chunk:
            break
        applier.records += len(chunk)
        apply = applier.apply
        for record in chunk:
            apply(record)
    if applier.records:
        log.info(
            "recovery_done",
            records=applier.records,
            messages=applier.messages,
            seconds=round(time.monotonic() - started, 3),
        )
    return applier.highest_id


class _ProgressLog:
    """The ``progress(done, total)`` callback given to the store: logs at most once a second."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= 1.0 or done == total:
            self._last = now
            log.info("recovery_progress", done=done, total=total)


class _Applier(records.RecordHandler):
    """Turns recovered records into broker state without journaling them again."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.records = 0
        self.messages = 0
        self.highest_id = 0
        self._messages: dict[int, Message] = {}

    def unhandled(self, record: records.Record) -> None:
        """A store yielded a record that describes a change, not state: skip it."""
        log.warning("recovery_record_ignored", record=type(record).__name__)

    def _vhost(self, name: str):
        return self.broker.add_vhost(name)

    def on_config_set(self, record: records.ConfigSet) -> None:
        if record.namespace == VHOST and record.value is not None:
            self._vhost(record.key)
        elif record.namespace in ACCESS_NAMESPACES:
            self.broker.access.restore(record)
        elif record.namespace != VHOST:
            self.broker.plugin_settings.restore(record)

    def on_exchange_declared(self, record: records.ExchangeDeclared) -> None:
        vhost = self._vhost(record.vhost)
        vhost.restore_exchange(record)

    def on_queue_declared(self, record: records.QueueDeclared) -> None:
        self._vhost(record.vhost).restore_queue(record)

    def on_binding_added(self, record: records.BindingAdded) -> None:
        self._vhost(record.vhost).restore_binding(record)

    def on_message_enqueued(self, record: records.MessageEnqueued) -> None:
        self.highest_id = max(self.highest_id, record.message_id)
        queue = self._vhost(record.vhost).queues.get(record.queue)
        if queue is None:
            return
        if peek_header(record.header).delivery_mode != 2:
            # A transient message written only because its queue was paging: not recovered.
            self.broker.journal.append(
                records.MessageRemoved(record.vhost, record.queue, record.message_id)
            )
            return
        self.messages += 1
        if queue.pages_next():
            queue.restore_paged(len(record.body))
            return
        message = self._messages.get(record.message_id)
        if message is None:
            message = Message.from_record(record)
            # Messages shared by several queues are recovered as one object, as published.
            self._messages[record.message_id] = message
        queue.restore(message, record.redelivered, record.enqueued_at)
