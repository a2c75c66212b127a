"""The fanout exchange: every message goes to every bound destination."""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any

from plugmq.broker.exchange import Binding, Exchange, RoutableMessage


class FanoutExchange(Exchange):
    """Ignores routing keys and arguments; :meth:`route` returns the stored destination set."""

    type_name = "fanout"

    def _setup_routing(self) -> None:
        """Start with no destinations."""
        self._destinations: set[Any] = set()

    def _route_key(self, binding: Binding) -> Hashable:
        """Every binding to a destination means the same thing, whatever its key."""
        return None

    def _attach(self, route_key: None, binding: Binding) -> None:
        """Add the destination."""
        self._destinations.add(binding.destination)

    def _detach(self, route_key: None, binding: Binding) -> None:
        """Remove the destination."""
        self._destinations.discard(binding.destination)

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """Return every bound destination (the stored set)."""
        return self._destinations
