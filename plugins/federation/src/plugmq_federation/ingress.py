"""The ingress exchange: where push links publish, so the destination drops copies too.

A pull link publishes into its own broker and asks that broker's duplicate window before it
does. A push link runs on the source and publishes over AMQP: the destination's window would
never see its messages. So a push link publishes into ``federation.ingress.<route id>`` on the
destination, an exchange of type ``x-plugmq-federation-ingress`` bound (exchange to exchange)
to the route's exchange, and this exchange's :meth:`IngressExchange.route` asks the
destination's window: a copy routes nowhere, anything else goes on to the route's exchange.

Resends (a message the source delivers again after a link or a broker broke, marked
``redelivered``) of messages without a ``message_id`` look like new identical messages to the
window (it counts those per path); the push link sends them to the route's *resend* ingress
(``...resent``), whose route consults the route's in-doubt set first, as a pull link does.

The window and the in-doubt sets are per broker (:func:`ingress_state`, in ``broker.stash``);
an exchange is built by the engine from names only, so ``plugmq_exchange_declared`` hands it
the state (recovery included: the event fires for recovered exchanges too).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any

from plugmq.api import Binding, Exchange, RoutableMessage
from plugmq_federation.dedup import DuplicateWindow, InDoubt
from plugmq_federation.hops import SEPARATOR, STAMP
from plugmq_federation.wire import PATH_HEADER, WireError, scan

TYPE_NAME = "x-plugmq-federation-ingress"
STASH_KEY = "federation.ingress"
#: The exchange argument naming the route an ingress belongs to (its in-doubt set).
ROUTE_ARGUMENT = "x-federation-route"
#: The exchange argument of a resend ingress.
RESENT_ARGUMENT = "x-federation-resent"
#: In-doubt keys remembered per route (as many as a pull link's floor).
IN_DOUBT_SIZE = 4096
_EMPTY: frozenset[Any] = frozenset()


def ingress_name(route_id: str, resent: bool = False) -> str:
    """The ingress exchange a push route publishes into on its destination."""
    return f"federation.ingress.{route_id}" + (".resent" if resent else "")


class IngressState:
    """One broker's duplicate window (shared with its pull links) and per-route in-doubt sets."""

    def __init__(self) -> None:
        self.window = DuplicateWindow()
        self.in_doubt: dict[str, InDoubt] = {}
        #: Copies the ingress exchanges dropped (``link list`` on the source cannot see them).
        self.duplicates = 0

    def in_doubt_of(self, route_id: str) -> InDoubt:
        """The in-doubt set of a push route arriving here (made on first use)."""
        found = self.in_doubt.get(route_id)
        if found is None:
            found = self.in_doubt[route_id] = InDoubt(IN_DOUBT_SIZE)
        return found


def ingress_state(broker: Any) -> IngressState:
    """The broker's :class:`IngressState` (made on first use, kept in ``broker.stash``)."""
    state = broker.stash.get(STASH_KEY)
    if state is None:
        state = broker.stash[STASH_KEY] = IngressState()
    return state


class IngressExchange(Exchange):
    """Routes to every bound destination (the route's exchange) unless the message is a copy
    of one this broker took recently (then nowhere)."""

    type_name = TYPE_NAME

    def _setup_routing(self) -> None:
        """No state until :meth:`attach`: a message before it passes unchecked."""
        self._destinations: set[Any] = set()
        self._state: IngressState | None = None
        self._in_doubt: InDoubt | None = None
        self._resent = bool(self.arguments.get(RESENT_ARGUMENT))

    def attach(self, state: IngressState) -> None:
        """Use this broker's window (called from ``plugmq_exchange_declared``)."""
        self._state = state
        route = self.arguments.get(ROUTE_ARGUMENT)
        if isinstance(route, bytes):
            route = route.decode()
        self._in_doubt = state.in_doubt_of(route or self.name)

    def _route_key(self, binding: Binding) -> Hashable:
        """Keys mean nothing here: every binding to a destination counts once."""
        return None

    def _attach(self, route_key: None, binding: Binding) -> None:
        self._destinations.add(binding.destination)

    def _detach(self, route_key: None, binding: Binding) -> None:
        self._destinations.discard(binding.destination)

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """The bound destinations, or none for a duplicate.

        Per message: a byte scan for the path header first, so a message without one (not
        forwarded: nothing to check) costs no decoding at all.
        """
        state = self._state
        header: bytes = message.header  # type: ignore[attr-defined]  # the engine's Message
        if state is None or PATH_HEADER not in header:
            return self._destinations
        key, route, counted = origin_key(header)
        if key is None:
            return self._destinations
        in_doubt = self._in_doubt
        if self._resent and in_doubt is not None and in_doubt.resent(key):
            state.duplicates += 1
            return _EMPTY
        if not state.window.admit(key, route, counted):
            state.duplicates += 1
            return _EMPTY
        if in_doubt is not None:
            in_doubt.stored(key)
        return self._destinations


def origin_key(header: bytes) -> tuple[bytes | None, bytes, bool]:
    """The window key of a pushed message, the path it came by (as a pull link would see
    it: without this broker, the last id) and whether the key counts identical messages
    (a content stamp); a None key when it carries none.

    The key is the one :func:`plugmq_federation.hops.hop` uses: origin broker and
    ``message_id``, or origin broker and the content stamp the first hop wrote.
    """
    try:
        found = scan(header)
    except (WireError, IndexError, ValueError):
        return None, b"", False  # not ours to refuse: the engine accepted the header
    if found.path is None:
        return None, b"", False
    path, _, stamp = found.path.partition(STAMP)
    origin = path.split(SEPARATOR, 1)[0]
    before = path.rpartition(SEPARATOR)[0]
    # A pull link sees b"" when the sender is the origin (no path yet): the same path.
    route = before if SEPARATOR in before else b""
    if found.message_id:
        return origin + b"/" + found.message_id, route, False
    if not stamp:
        return None, b"", False
    return origin + b"#" + stamp, route, True
