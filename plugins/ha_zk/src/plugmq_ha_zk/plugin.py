"""Hook implementations of ``ha_zk`` (the logic is in :mod:`.strategy` and its modules)."""

from __future__ import annotations

from typing import Any

from plugmq.api import BrokerAPI, Config, ConnectionInfo, ConnectionRefusal, Role, hookimpl
from plugmq.config import ConfigError, OptionRegistry
from plugmq_ha_zk import options as zk_options
from plugmq_ha_zk.strategy import ZKStrategy, log_replication_event
from plugmq_store_bdb.replication import ReplicationSettings
from plugmq_store_bdb.store import BDBStore

STASH_KEY = "ha_zk"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """The ``--zk-*``, ``--replicas`` and ``--replication-*`` flags (``--ha-advertise-url`` is
    the core's, shared by every HA mode)."""
    zk_options.add_options(options)


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check the flags of ``--ha zookeeper`` before anything starts."""
    if config.get("ha") == zk_options.MODE:
        zk_options.settings(config)
        if config.get("store", "bdb") != "bdb":
            raise ConfigError("--ha zookeeper replicates the Berkeley DB store: use --store bdb")


@hookimpl(tryfirst=True)
def plugmq_store(config: Config) -> BDBStore | None:
    """With ``--ha zookeeper``: the Berkeley DB store in replication mode."""
    if config.get("ha") != zk_options.MODE:
        return None
    zk = zk_options.settings(config)
    return BDBStore(
        zk.data_dir / "bdb",
        sync=config.get("bdb_sync", "commit"),
        cache_mb=config.get("bdb_cache_mb", 64),
        replication=ReplicationSettings(
            local=zk.replication_address,
            peers=zk.peers,
            ack_timeout=zk.ack_timeout,
            on_event=log_replication_event,
        ),
    )


@hookimpl
def plugmq_ha_strategy(config: Config) -> ZKStrategy | None:
    """The ZooKeeper strategy for ``--ha zookeeper``."""
    return ZKStrategy(zk_options.settings(config)) if config.get("ha") == zk_options.MODE else None


@hookimpl
def plugmq_connection_check(broker: BrokerAPI, connection: ConnectionInfo) -> Any:
    """A broker that is not master names the master (or says none is elected yet)."""
    strategy = broker.stash.get(STASH_KEY)
    if strategy is None or broker.role is Role.MASTER:
        return None
    master = strategy.status.master
    if master is None or not master.url:
        return ConnectionRefusal(
            f"{broker.role.value}: no master elected yet in {strategy.settings.zk_path}"
        )
    return ConnectionRefusal(f"{broker.role.value}; the master is {master.url}")


@hookimpl
def plugmq_server_properties(broker: BrokerAPI) -> dict[str, Any] | None:
    """The master advertises every member's URL (``cluster_urls``) for failover clients."""
    strategy = broker.stash.get(STASH_KEY)
    if strategy is None:
        return None
    return {"cluster_urls": strategy.status.cluster_urls()}
