"""Test plugin: fails in ``plugmq_network_changed`` (the broker must contain it)."""

from __future__ import annotations

from typing import Any

from plugmq.api import hookimpl


@hookimpl
def plugmq_network_changed(broker: Any, peers: Any) -> None:
    """Always fails."""
    raise RuntimeError("network_raiser fails on purpose")
