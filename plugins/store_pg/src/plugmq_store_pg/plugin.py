"""Hook implementations of the PostgreSQL store and its HA mode (logic in the modules beside it)."""

from __future__ import annotations

from typing import Any

import trio

from plugmq.api import (
    BrokerAPI,
    Config,
    ConfigError,
    ConnectionInfo,
    ConnectionRefusal,
    OptionRegistry,
    Role,
    Service,
    hookimpl,
)
from plugmq_store_pg.lease import Holder, LockTable
from plugmq_store_pg.link import BLOCK_NAME, EpochGuard, Link
from plugmq_store_pg.session import Database
from plugmq_store_pg.store import PGStore
from plugmq_store_pg.strategy import STASH_KEY, PgHA

GROUP = "PostgreSQL store"
HA_GROUP = "HA (PostgreSQL lock row, --ha pg)"
#: Shorter leases make a GC pause or a slow commit look like a dead master.
MIN_LEASE = 0.5


@hookimpl(trylast=True)  # after store_bdb's, which owns --store when it is loaded
def plugmq_add_options(options: OptionRegistry) -> None:
    """Register ``--pg-dsn``, ``--pg-schema``, ``--pg-retry-seconds`` (and ``--store`` and the
    HA flags when no other plugin did)."""
    if "store" not in options:
        options.add(
            "--store",
            type=str,
            default="memory",
            help="Message store: 'pg' (PostgreSQL, see --pg-dsn) or 'memory' (nothing kept).",
            group=GROUP,
        )
    options.add(
        "--pg-dsn",
        type=str,
        default=None,
        envvar="PLUGMQ_PG_DSN",
        help="--store pg: libpq connection string or URL of the PostgreSQL database "
        "(e.g. 'host=db user=plugmq dbname=plugmq'; a password is better in ~/.pgpass).",
        group=GROUP,
    )
    options.add(
        "--pg-schema",
        type=str,
        default="plugmq",
        help="--store pg: the PostgreSQL schema holding this broker group's tables "
        "(created if missing; one schema per group).",
        group=GROUP,
    )
    options.add(
        "--pg-retry-seconds",
        type=float,
        default=60.0,
        help="--store pg without --ha pg: how long to retry an unreachable database "
        "(publishers blocked meanwhile) before stopping with an error.",
        group=GROUP,
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check the flags; give the broker its :class:`Link` (store <-> HA strategy)."""
    if config.get("store") != "pg" and config.get("ha") != "pg":
        return
    if config.get("ha") == "pg" and config.get("store") != "pg":
        raise ConfigError("--ha pg needs the PostgreSQL store (--store pg)")
    if not config.get("pg_dsn"):
        raise ConfigError("--store pg needs --pg-dsn (or PLUGMQ_PG_DSN): which database to use")
    if not config.get("pg_schema"):
        raise ConfigError("--pg-schema must not be empty")
    if config.get("pg_retry_seconds", 60.0) < 0:
        raise ConfigError("--pg-retry-seconds must not be negative")
    if config.get("ha") == "pg":
        _check_ha(config)
    config.pg_link = Link(guard=EpochGuard() if config.get("ha") == "pg" else None)


def _check_ha(config: Config) -> None:
    lease = config.get("ha_lease", 10.0)
    if lease is None or lease < MIN_LEASE:
        raise ConfigError(f"--ha-lease must be at least {MIN_LEASE} seconds, not {lease}")
    url = config.get("ha_advertise_url")
    if url is not None and not url.startswith(("amqp://", "amqps://", "rdma://")):
        raise ConfigError(
            f"--ha-advertise-url must be a broker URL (amqp://host:port/), not {url!r}"
        )
    if not config.get("ha_group"):
        raise ConfigError("--ha-group must not be empty")


@hookimpl
def plugmq_ha_strategy(config: Config) -> PgHA | None:
    """The strategy for ``--ha pg``."""
    if config.get("ha") != "pg":
        return None
    link: Link = config.pg_link
    assert link.guard is not None
    database = Database(config.pg_dsn, config.get("pg_schema", "plugmq"), _idle_timeout(config))
    group, lease = config.ha_group, config.ha_lease

    def table_for(holder: Holder) -> LockTable:
        return LockTable(database, group, lease, holder)

    return PgHA(table_for, link.guard, lease, group, config.get("ha_advertise_url"))


@hookimpl
def plugmq_connection_check(broker: BrokerAPI, connection: ConnectionInfo) -> Any:
    """Refuse clients unless this broker is master with a valid lease; name the master."""
    strategy: PgHA | None = broker.stash.get(STASH_KEY)
    if strategy is None or strategy.serving(broker):
        return None
    return ConnectionRefusal(strategy.redirect_text(broker))


@hookimpl
def plugmq_server_properties(broker: BrokerAPI) -> dict[str, Any] | None:
    """Advertise the group's member URLs (``cluster_urls``) to clients of the master."""
    strategy: PgHA | None = broker.stash.get(STASH_KEY)
    if strategy is None or broker.role is not Role.MASTER:
        return None
    return {"cluster_urls": list(strategy.members)}


@hookimpl
def plugmq_store(config: Config) -> PGStore | None:
    """The PostgreSQL store when ``--store pg``."""
    if config.get("store") != "pg":
        return None
    return PGStore(
        config.pg_dsn,
        schema_name=config.get("pg_schema", "plugmq"),
        group=config.get("ha_group") or "plugmq",
        retry_seconds=config.get("pg_retry_seconds", 60.0),
        link=config.get("pg_link"),
        idle_timeout=_idle_timeout(config),
    )


def _idle_timeout(config: Config) -> float:
    """Under ``--ha pg`` a quarter lease (see :class:`Database`); 0 (never) otherwise."""
    return config.ha_lease / 4 if config.get("ha") == "pg" else 0.0


@hookimpl
def plugmq_services(broker: BrokerAPI) -> list[Service]:
    """While master: let the store block publishers during a database outage."""
    link: Link | None = broker.config.get("pg_link")
    if link is None:
        return []

    async def outage_reports(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        link.broker = broker
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            link.broker = None
            broker.unblock_publishers(BLOCK_NAME)

    return [outage_reports]
