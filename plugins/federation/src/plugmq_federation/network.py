"""``--network dynamic``: a master keeps routes to every other group discovery found.

For every other group (``plugmq_network_changed``, :mod:`plugmq.network`) and every
``--network-exchange`` this master runs a dynamic route pulling from the group (its queue on
the group is bound with the keys bound here), and for every ``--network-queue`` a demand route
(the group's queue moves here while it has consumers here). The route's remote is the group's
URL list, so the link follows the group's master through failovers; its id is made from the
group's *name*, so a changed URL list retargets the running link instead of making a new route
(and a new queue). Every group links to every other directly, so network routes stop at one
hop (``max_hops`` 1): a message is never forwarded twice and a binding is never propagated.

Network routes are not saved as routes (discovery makes them again after every promotion),
but their queues are durable, and what a dynamic route bound on its group is kept in the
replicated settings (:mod:`.persistence`), so a new master of this group carries on with the
queue its predecessor filled instead of starting from an empty one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from plugmq.api import Config, ConfigError, GroupAnnouncement
from plugmq_federation.routes import Route

if TYPE_CHECKING:
    from plugmq_federation.federation import Federation

log = structlog.get_logger("plugmq.federation")

MODES = ("dynamic",)
#: Network routes go one hop: every group has a route from every other (a full mesh).
NETWORK_MAX_HOPS = 1


@dataclass(frozen=True)
class NetworkSettings:
    """What ``--network dynamic`` links: exchanges (dynamic routes) and queues (demand)."""

    exchanges: tuple[str, ...]
    queues: tuple[str, ...]
    vhost: str = "/"


def network_settings(config: Config) -> NetworkSettings | None:
    """The checked ``--network*`` flags; None when the network is off."""
    mode = config.get("network")
    if not mode:
        return None
    if mode not in MODES:
        raise ConfigError(f"--network must be 'dynamic', not {mode!r}")
    exchanges = tuple(dict.fromkeys(config.get("network_exchange") or ("amq.topic",)))
    queues = tuple(dict.fromkeys(config.get("network_queue") or ()))
    for name in (*exchanges, *queues):
        if not name or len(name) > 200:
            raise ConfigError(f"--network-exchange/--network-queue {name!r} is not a name")
    return NetworkSettings(exchanges, queues)


class NetworkRoutes:
    """The network routes of one master, kept equal to what discovery says."""

    def __init__(self, federation: Federation, settings: NetworkSettings) -> None:
        self.federation = federation
        self.settings = settings
        #: The network routes now, by route id.
        self.routes: dict[str, Route] = {}
        #: Routes the peers call for that could not start (a missing local exchange).
        self.unstarted = 0

    def wanted(self, peers: Mapping[str, GroupAnnouncement]) -> dict[str, Route]:
        """Every route the peers call for, by id."""
        routes = []
        for peer in peers.values():
            common = {
                "remote": peer.urls,
                "vhost": self.settings.vhost,
                "durable": True,
                "max_hops": NETWORK_MAX_HOPS,
                "group": peer.group,
            }
            for name in self.settings.exchanges:
                routes.append(Route("dynamic", exchange=name, **common))
            for name in self.settings.queues:
                routes.append(Route("demand", exchange="", queue=name, **common))
        return {route.id: route for route in routes}

    def apply(self, peers: Mapping[str, GroupAnnouncement]) -> None:
        """Start routes to new groups, stop those to vanished ones, retarget moved ones."""
        wanted = self.wanted(peers)
        for route_id in [r for r in self.routes if r not in wanted]:
            route = self.routes.pop(route_id)
            self.federation.stop_link(route_id)
            log.info("federation_network_route_stopped", route=route_id, group=route.group)
        self.unstarted = 0
        for route_id, route in wanted.items():
            known = self.routes.get(route_id)
            if known is None:
                self._start(route)
            elif known.remote != route.remote:
                # New URLs, or a new master first in the list: dial it now, not after backoff.
                self.federation.retarget(route, wake=known.remote[0] != route.remote[0])
                self.routes[route_id] = route
                log.info(
                    "federation_network_route_retargeted", route=route_id, remote=list(route.remote)
                )

    def _start(self, route: Route) -> None:
        error = self.federation.start_network(route)
        if error is not None:  # a missing exchange here: logged, tried again (Federation.run)
            self.unstarted += 1
            log.error(
                "federation_network_route_not_started",
                route=route.id,
                group=route.group,
                error=error,
            )
            return
        self.routes[route.id] = route
        log.info(
            "federation_network_route_started",
            route=route.id,
            group=route.group,
            kind=route.kind,
            name=route.queue or route.exchange,
        )

    def describe(self) -> list[dict[str, Any]]:
        """The network routes for listings."""
        return [route.describe() for route in self.routes.values()]
