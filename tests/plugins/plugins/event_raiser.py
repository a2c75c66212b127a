"""A test plugin whose event hooks raise for entities named ``boom.*`` (and for every vhost).

Used to check the contract: a plugin failing in an event hook is logged
(``plugin_event_failed``), other plugins still get the event, and the client operation that
caused the change succeeds with its connection left open.
"""

from __future__ import annotations

from typing import Any

from plugmq.events import BindingEvent
from plugmq.hookspecs import hookimpl


class EventHookError(RuntimeError):
    """The failure this plugin raises on purpose."""


def _explode(event: str, name: str) -> None:
    if name.startswith("boom."):
        raise EventHookError(f"{event} refused {name} on purpose")


@hookimpl
def plugmq_vhost_added(broker: Any, vhost: Any) -> None:
    """Raise for every vhost, ``/`` at start-up included: the broker must start anyway."""
    raise EventHookError(f"vhost_added refused {vhost.name} on purpose")


@hookimpl
def plugmq_queue_declared(vhost: Any, queue: Any) -> None:
    """Raise for a ``boom.*`` queue."""
    _explode("queue_declared", queue.name)


@hookimpl
def plugmq_binding_added(vhost: Any, binding: BindingEvent) -> None:
    """Raise for a binding to a ``boom.*`` destination."""
    _explode("binding_added", binding.destination)


@hookimpl
def plugmq_consumer_added(vhost: Any, queue: Any, consumer: Any) -> None:
    """Raise for a consumer of a ``boom.*`` queue."""
    _explode("consumer_added", queue.name)


@hookimpl
def plugmq_queue_deleted(vhost: Any, queue: Any) -> None:
    """Raise for a ``boom.*`` queue."""
    _explode("queue_deleted", queue.name)
