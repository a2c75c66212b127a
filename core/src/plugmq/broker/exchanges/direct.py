"""The direct exchange: a message goes to the destinations bound with exactly its routing key."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from plugmq.broker.exchange import EMPTY, Binding, Exchange, RoutableMessage


class DirectExchange(Exchange):
    """Routes by exact routing-key equality; binding arguments are ignored, as in RabbitMQ.

    The table maps each key to the set of its destinations and :meth:`route` returns that set
    itself, so routing is one dict lookup with no allocation.
    """

    type_name = "direct"

    def _setup_routing(self) -> None:
        """Start with no keys."""
        self._routes: dict[str, set[Any]] = {}

    def _attach(self, route_key: str, binding: Binding) -> None:
        """Add the destination under ``route_key``."""
        self._routes.setdefault(route_key, set()).add(binding.destination)

    def _detach(self, route_key: str, binding: Binding) -> None:
        """Remove the destination from ``route_key``; drop the key when its set empties."""
        destinations = self._routes[route_key]
        destinations.discard(binding.destination)
        if not destinations:
            del self._routes[route_key]

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """Return the destinations bound with ``message.routing_key`` (the stored set)."""
        return self._routes.get(message.routing_key, EMPTY)
