"""The plugin's hooks: flags, validation, and what plugmq_store / plugmq_ha_strategy return."""

from __future__ import annotations

import pytest

from plugmq.builtin import core_options
from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq_store_pg import plugin
from plugmq_store_pg.store import PGStore
from plugmq_store_pg.strategy import PgHA

DSN = "host=127.0.0.1 port=1 user=u dbname=d"


def registry(*, with_store_flag: bool = True) -> OptionRegistry:
    """The core's flags (--ha, --ha-lease, --data-dir...), store_bdb's --store (when loaded),
    and this plugin's."""
    options = OptionRegistry()
    core_options.plugmq_add_options(options)
    if with_store_flag:
        options.add("--store", default="bdb", help="store (store_bdb's flag)")
    plugin.plugmq_add_options(options)
    return options


def configured(**values: object) -> Config:
    """A configuration after ``plugmq_configure``."""
    config = Config.defaults(registry(), **values)
    plugin.plugmq_configure(config)
    return config


def test_flags_and_defaults() -> None:
    options = registry()
    assert options["store"].default == "bdb", "store_bdb's --store is left as it is"
    assert options["pg_schema"].default == "plugmq"
    assert options["pg_dsn"].envvar == "PLUGMQ_PG_DSN"
    assert options["ha_lease"].default == 10.0
    assert options["ha_group"].default == "plugmq"


def test_store_flag_is_registered_when_store_bdb_is_absent() -> None:
    options = registry(with_store_flag=False)
    assert options["store"].default == "memory"
    assert "'pg'" in options["store"].help


def test_store_pg_gives_a_pg_store_and_no_strategy_without_ha_pg() -> None:
    config = configured(store="pg", pg_dsn=DSN, pg_schema="s1")
    store = plugin.plugmq_store(config)
    assert isinstance(store, PGStore)
    assert (store.schema, store.group, store.link.guard) == ("s1", "plugmq", None)
    assert store.db.idle_timeout == 0.0
    assert plugin.plugmq_ha_strategy(config) is None


def test_ha_pg_shares_the_epoch_guard_with_the_store() -> None:
    config = configured(store="pg", pg_dsn=DSN, ha="pg", ha_lease=4.0, ha_group="orders")
    store = plugin.plugmq_store(config)
    strategy = plugin.plugmq_ha_strategy(config)
    assert isinstance(strategy, PgHA)
    assert store.link.guard is strategy.guard
    assert (store.group, strategy.group, strategy.lease_seconds) == ("orders", "orders", 4.0)
    assert store.db.idle_timeout == 1.0


def test_other_stores_are_left_alone() -> None:
    config = configured(store="bdb")
    assert plugin.plugmq_store(config) is None
    assert config.get("pg_link") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"store": "pg"}, "--store pg needs --pg-dsn"),
        ({"store": "bdb", "ha": "pg"}, "--ha pg needs the PostgreSQL store"),
        ({"store": "pg", "pg_dsn": DSN, "pg_schema": ""}, "--pg-schema must not be empty"),
        ({"store": "pg", "pg_dsn": DSN, "pg_retry_seconds": -1.0}, "must not be negative"),
        ({"store": "pg", "pg_dsn": DSN, "ha": "pg", "ha_lease": 0.1}, "--ha-lease must be"),
        (
            {"store": "pg", "pg_dsn": DSN, "ha": "pg", "ha_advertise_url": "broker:5672"},
            "--ha-advertise-url must be a broker URL",
        ),
    ],
)
def test_bad_flags_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        configured(**values)
