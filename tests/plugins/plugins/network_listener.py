"""Test plugin: keeps every ``plugmq_network_changed`` call in ``broker.stash``."""

from __future__ import annotations

from typing import Any

from plugmq.api import hookimpl


@hookimpl
def plugmq_network_changed(broker: Any, peers: Any) -> None:
    """Record the groups and their masters of each call."""
    calls = broker.stash.setdefault("network_listener", [])
    calls.append({name: (peer.master, peer.epoch) for name, peer in peers.items()})
