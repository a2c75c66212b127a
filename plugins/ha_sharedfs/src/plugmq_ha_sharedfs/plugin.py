"""Hook implementations of the shared-filesystem HA plugin (logic in the modules beside it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from plugmq.api import (
    Admin,
    BrokerAPI,
    Config,
    ConfigError,
    ConnectionInfo,
    ConnectionRefusal,
    Role,
    hookimpl,
)
from plugmq_ha_sharedfs.directory import SharedDirectory
from plugmq_ha_sharedfs.election import Election
from plugmq_ha_sharedfs.lease import Holder
from plugmq_ha_sharedfs.settings import settings_from
from plugmq_ha_sharedfs.status import STASH_KEY, make_ha_app
from plugmq_ha_sharedfs.strategy import SharedFSHA

GROUP = "HA (shared filesystem)"


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check the flags and make store_bdb leave locking to the HA lock (``--bdb-lock external``)."""
    if config.get("ha") != "sharedfs":
        return
    settings_from(config)  # raises ConfigError for a bad value
    if config.get("store", "bdb") != "bdb":
        raise ConfigError("--ha sharedfs needs the durable store (--store bdb)")
    if config.get("bdb_sync", "commit") != "commit":
        raise ConfigError(
            "--ha sharedfs needs --bdb-sync commit: a standby recovers from what is on disk"
        )
    # A SIGSTOPped master keeps its flock; the HA lease decides who writes instead.
    config.bdb_lock = "external"


@hookimpl
def plugmq_ha_strategy(config: Config) -> SharedFSHA | None:
    """The strategy for ``--ha sharedfs``."""
    if config.get("ha") != "sharedfs":
        return None
    settings = settings_from(config)
    directory = SharedDirectory(Path(config.get("data_dir") or "./plugmq-data"))
    election = Election(directory, settings.group, settings.lease, Holder.this_process(""))
    return SharedFSHA(directory, election, settings.advertise_url)


@hookimpl
def plugmq_connection_check(broker: BrokerAPI, connection: ConnectionInfo) -> Any:
    """Refuse clients unless this broker is master with a valid lease; name the master."""
    strategy: SharedFSHA | None = broker.stash.get(STASH_KEY)
    if strategy is None or strategy.serving(broker):
        return None
    return ConnectionRefusal(strategy.redirect_text(broker))


@hookimpl
def plugmq_server_properties(broker: BrokerAPI) -> dict[str, Any] | None:
    """Advertise the group's member URLs (``cluster_urls``) to clients of the master."""
    strategy: SharedFSHA | None = broker.stash.get(STASH_KEY)
    if strategy is None or broker.role is not Role.MASTER:
        return None
    return {"cluster_urls": list(strategy.members)}


@hookimpl
def plugmq_cli_commands(admin: Admin) -> list[tuple[str, typer.Typer]]:
    """``plugmq ha status``."""
    return [("ha", make_ha_app(admin))]
