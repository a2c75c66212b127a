"""Durable routes and the broker id, in the plugin's settings (journaled, replicated).

``broker.settings("federation")`` keeps ``route/<id>`` -> the route's record for every
durable route, and ``broker-id`` -> the generated id (so a broker keeps its id across
restarts, and an HA group's new master has its predecessor's). Each change goes through the
journal like any durable change: the store keeps it and an HA plugin replicates it.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from plugmq.settings import PluginSettings
from plugmq_federation.identity import check_broker_id
from plugmq_federation.routes import Route, RouteError

log = structlog.get_logger("plugmq.federation")

NAMESPACE = "federation"
ROUTE_PREFIX = "route/"
BROKER_ID = "broker-id"


class RouteStore:
    """The durable routes of one broker, in its federation settings."""

    def __init__(self, settings: PluginSettings) -> None:
        self.settings = settings

    def load(self) -> list[Route]:
        """The saved routes; a record that no longer parses is logged and skipped."""
        routes = []
        for key, record in self.settings.items():
            if not key.startswith(ROUTE_PREFIX):
                continue
            try:
                routes.append(Route.from_record(record))
            except RouteError as error:
                log.error("federation_route_unreadable", key=key, error=str(error))
        return routes

    async def save(self, route: Route) -> None:
        """Keep ``route``; durable when this returns."""
        self.settings.set(ROUTE_PREFIX + route.id, route.to_record())
        await self.settings.durable()

    async def forget(self, route: Route) -> None:
        """Drop ``route``; durable when this returns."""
        if self.settings.delete(ROUTE_PREFIX + route.id):
            await self.settings.durable()


def broker_id(configured: str | None, settings: PluginSettings) -> str:
    """``--broker-id`` when given, else the id kept in the settings (made the first time).

    The generated id is journaled; it is durable with the broker's next durable change.
    """
    if configured:
        return check_broker_id(configured)
    stored: Any = settings.get(BROKER_ID)
    if isinstance(stored, str):
        return check_broker_id(stored)
    value = str(uuid.uuid4())
    settings.set(BROKER_ID, value)
    return value


#: What a network route's link bound on its group's queue (see :mod:`.network`).
BINDINGS_PREFIX = "network-bindings/"


def load_bindings(settings: PluginSettings, route_id: str) -> set[tuple[str, str]]:
    """The (key, path) bindings an earlier master of this group made for ``route_id``."""
    stored: Any = settings.get(BINDINGS_PREFIX + route_id) or []
    return {(str(key), str(path)) for key, path in stored}


async def save_bindings(
    settings: PluginSettings, route_id: str, bindings: set[tuple[str, str]], wait: bool
) -> None:
    """Keep the bindings made (or about to be made: ``wait`` until durable before making
    them, so a successor never misses one it must unbind)."""
    settings.set(BINDINGS_PREFIX + route_id, sorted(bindings))
    if wait:
        await settings.durable()
