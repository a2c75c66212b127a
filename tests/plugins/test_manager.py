"""Loading plugins: entry points, --load-module, and the errors for bad plugins."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugmq.config import Config, ConfigError
from plugmq.plugins.manager import PluginLoadError, PluginManager


def write_plugin(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


def test_installed_plugins_load_through_entry_points() -> None:
    manager = PluginManager()
    manager.load()
    assert {"transport_tcp", "store_bdb"} <= set(manager.names())


def test_no_autoload_loads_only_builtins() -> None:
    manager = PluginManager()
    manager.load(autoload=False)
    assert manager.names() == []
    assert set(manager.exchange_types()) == {"direct", "fanout", "topic", "headers"}


def test_load_module_by_entry_point_name() -> None:
    manager = PluginManager()
    manager.load(["transport_tcp"], autoload=False)
    assert manager.names() == ["transport_tcp"]


def test_unknown_plugin_is_named_in_the_error() -> None:
    manager = PluginManager()
    with pytest.raises(PluginLoadError, match="unknown plugin 'no_such_plugin'"):
        manager.load(["no_such_plugin"], autoload=False)


def test_plugin_that_fails_to_import_is_named(tmp_path: Path) -> None:
    path = write_plugin(tmp_path, "broken", "import no_such_dependency_xyz\n")
    with pytest.raises(PluginLoadError, match=r"broken\.py' failed to import: ModuleNotFound"):
        PluginManager().load([str(path)], autoload=False)


def test_misspelt_hook_fails_at_start_up(tmp_path: Path) -> None:
    path = write_plugin(
        tmp_path,
        "typo",
        "from plugmq.hookspecs import hookimpl\n"
        "@hookimpl\ndef plugmq_exchange_type():\n    return []\n",
    )
    with pytest.raises(PluginLoadError, match=r"unknown hook.*plugmq_exchange_type"):
        PluginManager().load([str(path)], autoload=False)


def test_duplicate_exchange_type_names_both_plugins(tmp_path: Path) -> None:
    path = write_plugin(
        tmp_path,
        "dupe",
        "from plugmq.hookspecs import hookimpl\n"
        "from plugmq.broker.exchanges.direct import DirectExchange\n"
        "@hookimpl\ndef plugmq_exchange_types():\n    return [DirectExchange]\n",
    )
    manager = PluginManager()
    manager.load([str(path)], autoload=False)
    with pytest.raises(ConfigError, match="'direct' is registered by both"):
        manager.exchange_types()


def test_duplicate_flag_names_both_plugins(tmp_path: Path) -> None:
    path = write_plugin(
        tmp_path,
        "flagclash",
        "from plugmq.hookspecs import hookimpl\n"
        "@hookimpl\ndef plugmq_add_options(options):\n"
        "    options.add('--heartbeat', type=int, default=1, help='clash')\n",
    )
    manager = PluginManager()
    manager.load([str(path)], autoload=False)
    with pytest.raises(ConfigError, match="--heartbeat is registered by both"):
        manager.options()


def test_store_plugin_missing_for_chosen_store_is_an_error() -> None:
    manager = PluginManager()
    manager.load(autoload=False)
    registry = manager.options()
    config = Config({**Config.defaults(registry).as_dict(), "store": "bdb"})
    with pytest.raises(ConfigError, match="no loaded plugin provides store 'bdb'"):
        manager.store(config)


def test_describe_lists_hooks_of_each_plugin() -> None:
    manager = PluginManager()
    manager.load(["transport_tcp"], autoload=False)
    (info,) = [i for i in manager.describe() if i.name == "transport_tcp"]
    assert "plugmq_listeners" in info.hooks and "plugmq_dialer" in info.hooks
    assert info.version == "0.1.0"
