"""Fakes for the exchange-type tests: destinations and messages without a broker.

A module rather than conftest.py, so test files can import the classes by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class Dest:
    """A destination: hashed by identity, like the engine's queues and exchanges."""

    name: str
    kind: str = "queue"


@dataclass
class Msg:
    """A message with just the attributes exchanges read."""

    routing_key: str = ""
    headers: dict[str, Any] | None = None


class NoHeadersMsg:
    """A message whose headers must not be read (decoding them costs a full parse)."""

    def __init__(self, routing_key: str = "") -> None:
        self.routing_key = routing_key

    @property
    def headers(self) -> dict[str, Any] | None:
        """Fail the test: only the headers exchange may read headers."""
        raise AssertionError("headers read by an exchange that does not route on them")
