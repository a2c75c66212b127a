"""Durable routes on disk, until plugin settings through the journal land in the core.

The core is growing ``broker.settings(name)`` (records in the journal, replicated and
recovered like the rest); this module is the one place to switch over. Until then durable
routes live in ``<data-dir>/federation/routes.json``, replaced atomically (write, fsync,
rename), so a kill -9 leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

from plugmq_federation.routes import Route, RouteError

log = structlog.get_logger("plugmq.federation")


class RouteFile:
    """The durable routes of one broker."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "routes.json"

    def load(self) -> list[Route]:
        """The routes saved last; a record that no longer parses is logged and skipped."""
        if not self.path.exists():
            return []
        routes = []
        for record in json.loads(self.path.read_text()):
            try:
                routes.append(Route.from_record(record))
            except RouteError as error:
                log.error("federation_route_unreadable", error=str(error))
        return routes

    def save(self, routes: list[Route]) -> None:
        """Replace the saved routes with ``routes`` (durable before this returns)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w") as file:
            json.dump([route.to_record() for route in routes], file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
