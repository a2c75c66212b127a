"""A test plugin recording every control-plane event, one JSON line each, to ``--event-log``.

It uses only the public contract (no ``plugmq.broker`` import) and finds its per-broker state
through the ``vhost`` object every event passes (``vhost.broker.stash``), as a plugin serving
several brokers in one process must. Each line is written (line-buffered) before the hook
returns, so a broker killed with SIGKILL loses no recorded event.

Besides the event's own fields every line says:

* ``active``: whether the broker was serving clients (False for state rebuilt by recovery);
* ``same``: whether ``vhost`` is the object the broker holds under its name (consistency);
* for ``binding_removed``, ``known``: whether an equal :class:`plugmq.events.BindingEvent`
  had been added and not yet removed (the hashable identity the contract promises).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plugmq.config import OptionRegistry
from plugmq.events import BindingEvent
from plugmq.hookspecs import hookimpl

STASH_KEY = "test.event_counter"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """``--event-log PATH``: where to append the events (nothing is recorded without it)."""
    options.add("--event-log", type=Path, default=None, help="Append every event to this file.")


class _Recorder:
    """The per-broker state: the open log and the bindings currently known."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("a", buffering=1, encoding="utf-8")
        self.bindings: set[BindingEvent] = set()

    def write(self, broker: Any, vhost: Any, event: str, **fields: Any) -> None:
        line = {
            "event": event,
            "vhost": vhost.name,
            "active": broker.active.is_set(),
            "same": broker.vhosts.get(vhost.name) is vhost,
            **fields,
        }
        self.file.write(json.dumps(line, sort_keys=True) + "\n")


def _recorder(broker: Any) -> _Recorder | None:
    recorder = broker.stash.get(STASH_KEY)
    if recorder is None and broker.config.event_log is not None:
        recorder = broker.stash[STASH_KEY] = _Recorder(broker.config.event_log)
    return recorder


def _record(vhost: Any, event: str, **fields: Any) -> None:
    recorder = _recorder(vhost.broker)
    if recorder is not None:
        recorder.write(vhost.broker, vhost, event, **fields)


def _exchange(exchange: Any) -> dict[str, Any]:
    return {
        "name": exchange.name,
        "type": exchange.type_name,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
    }


def _queue(queue: Any) -> dict[str, Any]:
    return {
        "name": queue.name,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner is not None,
    }


def _binding(binding: BindingEvent) -> dict[str, Any]:
    return {
        "source": binding.source,
        "destination": binding.destination,
        "kind": binding.destination_kind,
        "key": binding.routing_key,
        "arguments": dict(binding.arguments),
    }


@hookimpl
def plugmq_vhost_added(broker: Any, vhost: Any) -> None:
    """Record the vhost (``broker`` is the one ``vhost.broker`` names)."""
    _record(vhost, "vhost_added", broker_matches=vhost.broker is broker)


@hookimpl
def plugmq_vhost_deleted(broker: Any, vhost: Any) -> None:
    """Record the vhost."""
    _record(vhost, "vhost_deleted", broker_matches=vhost.broker is broker)


@hookimpl
def plugmq_exchange_declared(vhost: Any, exchange: Any) -> None:
    """Record the exchange and its properties."""
    _record(vhost, "exchange_declared", **_exchange(exchange))


@hookimpl
def plugmq_exchange_deleted(vhost: Any, exchange: Any) -> None:
    """Record the exchange."""
    _record(vhost, "exchange_deleted", **_exchange(exchange))


@hookimpl
def plugmq_queue_declared(vhost: Any, queue: Any) -> None:
    """Record the queue and its properties."""
    _record(vhost, "queue_declared", **_queue(queue))


@hookimpl
def plugmq_queue_deleted(vhost: Any, queue: Any) -> None:
    """Record the queue."""
    _record(vhost, "queue_deleted", **_queue(queue))


@hookimpl
def plugmq_binding_added(vhost: Any, binding: BindingEvent) -> None:
    """Record the binding and remember it (by its hashable identity)."""
    recorder = _recorder(vhost.broker)
    if recorder is not None:
        recorder.bindings.add(binding)
    _record(vhost, "binding_added", **_binding(binding))


@hookimpl
def plugmq_binding_removed(vhost: Any, binding: BindingEvent) -> None:
    """Record the binding and whether an equal one was added before."""
    recorder = _recorder(vhost.broker)
    known = recorder is not None and binding in recorder.bindings
    if recorder is not None:
        recorder.bindings.discard(binding)
    _record(vhost, "binding_removed", known=known, **_binding(binding))


@hookimpl
def plugmq_consumer_added(vhost: Any, queue: Any, consumer: Any) -> None:
    """Record the consumer's queue and tag."""
    _record(vhost, "consumer_added", queue=queue.name, tag=consumer.tag)


@hookimpl
def plugmq_consumer_removed(vhost: Any, queue: Any, consumer: Any) -> None:
    """Record the consumer's queue and tag."""
    _record(vhost, "consumer_removed", queue=queue.name, tag=consumer.tag)
