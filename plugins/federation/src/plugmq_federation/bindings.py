"""Dynamic routes' demand: the bindings of each exchange, kept from the binding events.

A dynamic route (``qpid-route dynamic add DEST SRC EXCHANGE``) binds its queue on SRC with
the keys bound to EXCHANGE here, so only messages someone behind DEST is bound for travel.
The keys come from ``plugmq_binding_added`` / ``plugmq_binding_removed`` (recovery included,
so the registry is complete before any service starts).

Propagation over several hops is loop-safe like messages: a binding a link makes on its
remote carries ``x-plugmq-bound-from``, the broker ids it came through, origin first. A
binding whose path names the remote broker is not sent there, nor one that made
``max_hops`` hops. Different paths make different bindings (arguments are part of a
binding's identity), so removing the origin binding removes every propagated one exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

BOUND_FROM = "x-plugmq-bound-from"
STASH_KEY = "federation.bindings"

#: One binding's demand: (routing key, the path it came through, "" for a local binding).
Demand = tuple[str, str]


class BindingRegistry:
    """The binding keys of every exchange of one broker, and who wants to hear of changes."""

    def __init__(self) -> None:
        self._demand: dict[tuple[str, str], Counter[Demand]] = {}
        self._listeners: dict[tuple[str, str], set[Callable[[], None]]] = {}

    def added(self, vhost: str, source: str, key: str, arguments: Any) -> None:
        """A binding on ``source`` appeared (called by the hook)."""
        where = (vhost, source)
        self._demand.setdefault(where, Counter())[(key, _path(arguments))] += 1
        self._notify(where)

    def removed(self, vhost: str, source: str, key: str, arguments: Any) -> None:
        """A binding on ``source`` went away (called by the hook)."""
        where = (vhost, source)
        demand = self._demand.get(where)
        if demand is None:
            return
        entry = (key, _path(arguments))
        demand[entry] -= 1
        if demand[entry] <= 0:
            del demand[entry]
        self._notify(where)

    def demand(self, vhost: str, exchange: str) -> set[Demand]:
        """The distinct (key, path) pairs bound to ``exchange`` now."""
        return set(self._demand.get((vhost, exchange), ()))

    def listen(self, vhost: str, exchange: str, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each change of ``exchange``'s bindings."""
        self._listeners.setdefault((vhost, exchange), set()).add(callback)

    def unlisten(self, vhost: str, exchange: str, callback: Callable[[], None]) -> None:
        """Stop calling ``callback``."""
        self._listeners.get((vhost, exchange), set()).discard(callback)

    def _notify(self, where: tuple[str, str]) -> None:
        for callback in list(self._listeners.get(where, ())):
            callback()


def registry_of(broker: Any) -> BindingRegistry:
    """The broker's registry (made on first use: the hooks may fire before any service)."""
    registry = broker.stash.get(STASH_KEY)
    if registry is None:
        registry = broker.stash[STASH_KEY] = BindingRegistry()
    return registry


def _path(arguments: Any) -> str:
    value = arguments.get(BOUND_FROM, "") if arguments else ""
    return value.decode() if isinstance(value, bytes) else str(value)


def remote_bindings(
    demand: set[Demand], local_id: str, remote_id: str, max_hops: int
) -> set[Demand]:
    """What a dynamic link binds on its remote for ``demand``: (key, path with us added),
    without bindings that came from the remote (loops) or made ``max_hops`` hops."""
    wanted = set()
    for key, path in demand:
        hops = path.split(",") if path else []
        if remote_id in hops or local_id in hops or len(hops) >= max_hops:
            continue
        wanted.add((key, ",".join([*hops, local_id])))
    return wanted
