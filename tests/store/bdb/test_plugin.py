"""The plugin's hooks: flags, validation, and which store plugmq_store returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq_store_bdb import plugin
from plugmq_store_bdb.store import BDBStore


def registry() -> OptionRegistry:
    """A registry with this plugin's flags and the core's --data-dir."""
    options = OptionRegistry()
    options.add("--data-dir", type=Path, default=Path("./plugmq-data"), help="data directory")
    plugin.plugmq_add_options(options)
    return options


def test_flags_and_defaults() -> None:
    options = registry()
    assert options["store"].default == "bdb"
    assert options["bdb_sync"].default == "commit"
    assert options["bdb_cache_mb"].type is int
    assert options["bdb_cache_mb"].default == 64
    assert {options[n].group for n in ("store", "bdb_sync", "bdb_cache_mb")} == {
        "Berkeley DB store"
    }


def test_store_lives_in_data_dir_bdb(tmp_path: Path) -> None:
    config = Config.defaults(registry(), data_dir=tmp_path, bdb_sync="nosync", bdb_cache_mb=8)
    store = plugin.plugmq_store(config)
    assert isinstance(store, BDBStore)
    assert store.home == tmp_path / "bdb"
    assert (store.sync, store.cache_mb) == ("nosync", 8)


def test_store_memory_disables_the_plugin() -> None:
    assert plugin.plugmq_store(Config.defaults(registry(), store="memory")) is None


@pytest.mark.parametrize(("flag", "value"), [("bdb_sync", "sometimes"), ("bdb_cache_mb", 0)])
def test_bad_values_are_config_errors(flag: str, value: object) -> None:
    with pytest.raises(ConfigError, match=flag.replace("_", "-")):
        plugin.plugmq_configure(Config.defaults(registry(), **{flag: value}))


def test_inspect_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from plugmq.store.records import MessageEnqueued, QueueDeclared
    from plugmq_store_bdb import inspect

    store = BDBStore(tmp_path / "bdb", sync="nosync")
    store.open()
    store.apply([QueueDeclared("/", "q"), MessageEnqueued("/", "q", 7, "", "q", b"h", b"body")])
    store.close()
    assert inspect.main([str(tmp_path), "--records"]) == 0
    out = capsys.readouterr().out
    assert "messages: 1" in out
    assert "id=7" in out
    (tmp_path / "bdb" / "refs.db").write_text("garbage")
    assert inspect.main([str(tmp_path)]) == 1
    assert "refs.db" in capsys.readouterr().err
