"""Hook implementations of discovery (the logic is in the modules beside it)."""

from __future__ import annotations

from typing import Any

from plugmq.api import Config, OptionRegistry, hookimpl
from plugmq_discovery import options as flags
from plugmq_discovery.service import STASH_KEY, DiscoveryService


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """``--discovery`` and its ``--discovery-*`` flags."""
    flags.add_options(options)


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check the flags before anything starts (a bad value stops the broker with its reason)."""
    flags.settings(config)


@hookimpl
def plugmq_services(broker: Any) -> list[Any] | None:
    """The discovery service, while this broker is master (standbys never announce)."""
    settings = flags.settings(broker.config)
    if settings is None:
        return None
    service = broker.stash[STASH_KEY] = DiscoveryService(broker, settings)
    return [service.run]
