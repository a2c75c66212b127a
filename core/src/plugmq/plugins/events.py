"""The control-plane events facade: the one caller of the event hooks.

The engine calls one method here per real change (a queue declared, a binding removed ...),
after the change is made. Each plugin's implementation is called on its own, in pluggy's
order, and an exception it raises is contained: logged as ``plugin_event_failed`` with the
``plugin``, the ``hook`` (the event) and the ``exception`` (traceback), and the remaining
plugins are still called. The change has already happened, so the client operation that
caused it still succeeds; failing it (the old behaviour: 541 and the client's connection
closed) would report as failed a change that was made, and let one plugin's bug take clients
down.

Events are never per message. With no plugin listening, an event costs one method call and a
list copy in pluggy, and binding events do not even build their :class:`BindingEvent`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from plugmq.events import BindingEvent

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.exchange import Exchange
    from plugmq.broker.queue import Consumer, Queue
    from plugmq.broker.vhost import VHost
    from plugmq.ha import Role
    from plugmq.network import GroupAnnouncement

log = structlog.get_logger("plugmq.events")

#: Every event hook; :meth:`Events.check` refuses wrappers on them (see there).
EVENT_HOOKS = (
    "plugmq_broker_started",
    "plugmq_broker_stopping",
    "plugmq_role_changed",
    "plugmq_vhost_added",
    "plugmq_vhost_deleted",
    "plugmq_exchange_declared",
    "plugmq_exchange_deleted",
    "plugmq_queue_declared",
    "plugmq_queue_deleted",
    "plugmq_binding_added",
    "plugmq_binding_removed",
    "plugmq_consumer_added",
    "plugmq_consumer_removed",
    "plugmq_network_changed",
)


class Events:
    """Calls the event hooks of one plugin manager, one method per event."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._hook = pm.hook

    def check(self) -> list[str]:
        """Name the plugins that wrap an event hook (``wrapper=True``/``hookwrapper=True``).

        Implementations are called one by one so a failing plugin cannot stop the others; a
        wrapper cannot be called that way, so the plugin manager refuses it at start-up rather
        than skip it silently.
        """
        return [
            f"{impl.plugin_name}.{name}"
            for name in EVENT_HOOKS
            for impl in getattr(self._hook, name).get_hookimpls()
            if impl.wrapper or impl.hookwrapper
        ]

    # -- the broker's lifecycle ----------------------------------------------------------------

    def broker_started(self, broker: Broker) -> None:
        """The broker was promoted: master, listeners accept (every promotion)."""
        self._fire("plugmq_broker_started", {"broker": broker})

    def broker_stopping(self, broker: Broker) -> None:
        """A master stops serving (clean shutdown or fenced), before connections close."""
        self._fire("plugmq_broker_stopping", {"broker": broker})

    def role_changed(self, broker: Broker, old: Role, new: Role) -> None:
        """The broker's HA role changed (see :mod:`plugmq.ha`)."""
        self._fire("plugmq_role_changed", {"broker": broker, "old": old, "new": new})

    # -- virtual hosts -----------------------------------------------------------------------

    def vhost_added(self, broker: Broker, vhost: VHost) -> None:
        """A virtual host was created (start-up, recovery or at run time)."""
        self._fire("plugmq_vhost_added", {"broker": broker, "vhost": vhost})

    def vhost_deleted(self, broker: Broker, vhost: VHost) -> None:
        """A virtual host was deleted, after everything in it was."""
        self._fire("plugmq_vhost_deleted", {"broker": broker, "vhost": vhost})

    # -- exchanges and queues ----------------------------------------------------------------

    def exchange_declared(self, vhost: VHost, exchange: Exchange) -> None:
        """An exchange was created (by a client, with its vhost, or by recovery)."""
        self._fire("plugmq_exchange_declared", {"vhost": vhost, "exchange": exchange})

    def exchange_deleted(self, vhost: VHost, exchange: Exchange) -> None:
        """An exchange was deleted (explicitly, auto-delete, or with its vhost)."""
        self._fire("plugmq_exchange_deleted", {"vhost": vhost, "exchange": exchange})

    def queue_declared(self, vhost: VHost, queue: Queue) -> None:
        """A queue was created (by a client, a plugin, or by recovery)."""
        self._fire("plugmq_queue_declared", {"vhost": vhost, "queue": queue})

    def queue_deleted(self, vhost: VHost, queue: Queue) -> None:
        """A queue was deleted, after its bindings and consumers."""
        self._fire("plugmq_queue_deleted", {"vhost": vhost, "queue": queue})

    # -- bindings ------------------------------------------------------------------------------

    def binding_added(
        self,
        vhost: VHost,
        source: str,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: Mapping[str, Any],
    ) -> None:
        """A new binding from exchange ``source`` to ``destination`` (never a duplicate)."""
        if self._hook.plugmq_binding_added.get_hookimpls():
            binding = _binding(source, destination, routing_key, arguments)
            self._fire("plugmq_binding_added", {"vhost": vhost, "binding": binding})

    def binding_removed(
        self,
        vhost: VHost,
        source: str,
        destination: Queue | Exchange,
        routing_key: str,
        arguments: Mapping[str, Any],
    ) -> None:
        """A binding went (unbind, or its source or destination was deleted)."""
        if self._hook.plugmq_binding_removed.get_hookimpls():
            binding = _binding(source, destination, routing_key, arguments)
            self._fire("plugmq_binding_removed", {"vhost": vhost, "binding": binding})

    # -- consumers -----------------------------------------------------------------------------

    def consumer_added(self, vhost: VHost, queue: Queue, consumer: Consumer) -> None:
        """A consumer subscribed to ``queue``."""
        self._fire("plugmq_consumer_added", {"vhost": vhost, "queue": queue, "consumer": consumer})

    def consumer_removed(self, vhost: VHost, queue: Queue, consumer: Consumer) -> None:
        """A consumer left ``queue`` (cancelled, its channel or connection closed, queue gone)."""
        self._fire(
            "plugmq_consumer_removed", {"vhost": vhost, "queue": queue, "consumer": consumer}
        )

    # -- the network of HA groups -------------------------------------------------------------

    def network_changed(self, broker: Broker, peers: Mapping[str, GroupAnnouncement]) -> None:
        """The other groups a master knows of changed (see :mod:`plugmq.network`)."""
        self._fire("plugmq_network_changed", {"broker": broker, "peers": peers})

    # -- calling -------------------------------------------------------------------------------

    def _fire(self, name: str, kwargs: dict[str, Any]) -> None:
        """Call every implementation of ``name`` in pluggy's order, containing failures.

        ``Exception`` only: trio.Cancelled and KeyboardInterrupt are BaseExceptions and pass.
        """
        for impl in reversed(getattr(self._hook, name).get_hookimpls()):
            try:
                impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception:
                log.exception("plugin_event_failed", plugin=impl.plugin_name, hook=name)


def _binding(
    source: str, destination: Queue | Exchange, routing_key: str, arguments: Mapping[str, Any]
) -> BindingEvent:
    return BindingEvent(
        source, destination.name, destination.kind, routing_key, MappingProxyType(arguments)
    )
