"""The local-only exchange: where a network route's queue takes only what originated here.

Every group of a ``--network dynamic`` mesh links to every other directly, so a message that
reached this broker over a link must not go out again (``max_hops`` 1). Bound straight to the
route's exchange, the group's pull queue here would still *receive* such a message (a binding
cannot tell a forwarded message from a local one) and its link would drop it as hop-limited on
the far side: one useless enqueue, delivery and ack per group in between. So a network route
binds its queue to ``federation.network.<route id>``, an exchange of type
``x-plugmq-federation-local-only``, bound (exchange to exchange) to the route's exchange with
the keys; its :meth:`LocalOnlyExchange.route` passes a message only when it carries no path
header, i.e. when it was published in this broker.

A source without the federation plugin refuses the type: the link then binds its queue to the
route's exchange itself (hop-limited copies are dropped by the link, as before).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any

from plugmq.api import Binding, Exchange, RoutableMessage
from plugmq_federation.wire import PATH_HEADER

TYPE_NAME = "x-plugmq-federation-local-only"
_EMPTY: frozenset[Any] = frozenset()


def local_only_name(route_id: str) -> str:
    """The local-only exchange a network route binds its queue to on its source."""
    return f"federation.network.{route_id}"


class LocalOnlyExchange(Exchange):
    """Routes to every bound destination the messages that were published here (no path)."""

    type_name = TYPE_NAME

    def _setup_routing(self) -> None:
        self._destinations: set[Any] = set()

    def _route_key(self, binding: Binding) -> Hashable:
        """Keys mean nothing here (the keys are on the bindings into this exchange)."""
        return None

    def _attach(self, route_key: None, binding: Binding) -> None:
        self._destinations.add(binding.destination)

    def _detach(self, route_key: None, binding: Binding) -> None:
        self._destinations.discard(binding.destination)

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """The bound destinations for a local message; none for a forwarded one.

        Per message: one byte search in the content header, no decoding.
        """
        header: bytes = message.header  # type: ignore[attr-defined]  # the engine's Message
        if PATH_HEADER in header:
            return _EMPTY
        return self._destinations
