"""Hook implementations of the Berkeley DB store plugin (the logic is in :mod:`.store`)."""

from __future__ import annotations

from pathlib import Path

from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.hookspecs import hookimpl
from plugmq_store_bdb.store import LOCK_POLICIES, SYNC_POLICIES, BDBStore

GROUP = "Berkeley DB store"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """Register ``--store``, ``--bdb-sync``, ``--bdb-lock`` and ``--bdb-cache-mb``."""
    options.add(
        "--store",
        type=str,
        default="bdb",
        help="Message store: 'bdb' (Berkeley DB in <data-dir>/bdb), 'memory' (nothing kept), "
        "or one a plugin provides ('pg': PostgreSQL, see --pg-dsn).",
        group=GROUP,
    )
    options.add(
        "--bdb-sync",
        type=str,
        default="commit",
        help="'commit': fsync the log at every batch commit (kill -9 and power safe); "
        "'nosync': no fsync (fast, for tests and benchmarks; recent batches may be lost).",
        group=GROUP,
    )
    options.add(
        "--bdb-lock",
        type=str,
        default="flock",
        help="'flock': the store locks <data-dir>/bdb/LOCK so one broker uses it; 'external': "
        "an HA plugin (ha_sharedfs sets it) guarantees that, and close writes nothing.",
        group=GROUP,
    )
    options.add(
        "--bdb-cache-mb",
        type=int,
        default=64,
        help="Berkeley DB cache size in MiB.",
        group=GROUP,
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Reject a bad ``--bdb-sync`` or ``--bdb-cache-mb`` before anything starts."""
    if config.get("bdb_sync", "commit") not in SYNC_POLICIES:
        raise ConfigError(
            f"--bdb-sync must be one of {', '.join(SYNC_POLICIES)}, not {config.bdb_sync!r}"
        )
    if config.get("bdb_lock", "flock") not in LOCK_POLICIES:
        raise ConfigError(
            f"--bdb-lock must be one of {', '.join(LOCK_POLICIES)}, not {config.bdb_lock!r}"
        )
    if config.get("bdb_cache_mb", 64) < 1:
        raise ConfigError(f"--bdb-cache-mb must be at least 1, not {config.bdb_cache_mb}")


@hookimpl
def plugmq_store(config: Config) -> BDBStore | None:
    """The Berkeley DB store when ``--store bdb`` (the default), else None."""
    if config.get("store", "bdb") != "bdb":
        return None
    data_dir = Path(config.get("data_dir") or "./plugmq-data")
    return BDBStore(
        data_dir / "bdb",
        sync=config.get("bdb_sync", "commit"),
        cache_mb=config.get("bdb_cache_mb", 64),
        lock=config.get("bdb_lock", "flock"),
    )
