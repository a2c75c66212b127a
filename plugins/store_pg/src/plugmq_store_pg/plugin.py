"""Hook implementations of the PostgreSQL store and its HA mode (logic in the modules beside it)."""

from __future__ import annotations

import trio

from plugmq.api import BrokerAPI, Config, ConfigError, OptionRegistry, Service, hookimpl
from plugmq_store_pg.link import BLOCK_NAME, Link
from plugmq_store_pg.store import PGStore

GROUP = "PostgreSQL store"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """Register ``--pg-dsn``, ``--pg-schema`` and ``--pg-retry-seconds``."""
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
    config.pg_link = Link()


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
    )


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
