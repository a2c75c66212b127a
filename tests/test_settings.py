"""Persistent plugin settings (plugmq.settings): validation, journaling, durability, restore."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from plugmq.journal import Journal
from plugmq.settings import MAX_DEPTH, SettingsError, SettingsRegistry
from plugmq.store.memory import MemoryStore
from plugmq.store.records import ConfigSet
from plugmq_store_bdb import BDBStore


def test_values_are_plain_data_copied_in_and_out() -> None:
    settings = SettingsRegistry(Journal(MemoryStore())).namespace("toy")
    value = {"list": [1, 2.5, "s", b"b", None, True], "tuple": (1, 2), "nested": {"k": []}}
    settings.set("k", value)
    value["list"].append("changed later")
    got = settings.get("k")
    assert got == {"list": [1, 2.5, "s", b"b", None, True], "tuple": (1, 2), "nested": {"k": []}}
    got["nested"]["k"].append(1)
    assert settings.get("k")["nested"] == {"k": []}
    assert settings.get("missing", "default") == "default"
    assert "k" in settings and len(settings) == 1 and list(settings) == ["k"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("k", object(), "object is not plain data"),
        ("k", {"a": {1: "x"}}, r"toy/k\.a: dict keys must be str"),
        ("k", [1, {2, 3}], r"toy/k\[1\]: set is not plain data"),
        ("k", None, "use delete"),
        ("", 1, "non-empty str"),
        (7, 1, "non-empty str"),
        ("x" * 2000, 1, "longer than"),
    ],
)
def test_bad_keys_and_values_are_refused_and_change_nothing(key, value, message) -> None:
    journal = Journal(MemoryStore())
    settings = SettingsRegistry(journal).namespace("toy")
    with pytest.raises(SettingsError, match=message):
        settings.set(key, value)
    assert settings.items() == []


def test_too_deep_a_value_is_refused() -> None:
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(SettingsError, match="nested deeper"):
        SettingsRegistry(Journal(MemoryStore())).namespace("toy").set("k", deep)


@pytest.mark.parametrize("namespace", ["vhost", "user", "permission", "access", ""])
def test_core_namespaces_are_refused(namespace: str) -> None:
    with pytest.raises(SettingsError):
        SettingsRegistry(Journal(MemoryStore())).namespace(namespace)


def test_the_same_namespace_is_the_same_object() -> None:
    registry = SettingsRegistry(Journal(MemoryStore()))
    assert registry.namespace("federation") is registry.namespace("federation")


def test_restore_fills_namespaces_without_journaling() -> None:
    registry = SettingsRegistry(Journal(MemoryStore()))
    registry.restore(ConfigSet("ha", "lease", 2.5))
    registry.restore(ConfigSet("ha", "gone", 1))
    registry.restore(ConfigSet("ha", "gone", None))
    assert registry.namespace("ha").items() == [("lease", 2.5)]


async def test_durable_waits_for_the_store_and_recovery_gets_it_back(tmp_path: Path) -> None:
    home = tmp_path / "bdb"
    store = BDBStore(home, sync="commit")
    store.open()
    journal = Journal(store)
    settings = SettingsRegistry(journal).namespace("federation")
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        settings.set("route", {"to": "b"})
        settings.set("other", [1])
        assert settings.delete("other") is True
        assert settings.delete("other") is False
        await settings.durable()
        assert journal.durable_seq == journal.last_seq == 3
        nursery.cancel_scope.cancel()
    store.close()
    store = BDBStore(home)
    store.open()
    try:
        config = [r for r in store.recover(lambda done, total: None) if isinstance(r, ConfigSet)]
    finally:
        store.close()
    assert config == [ConfigSet("federation", "route", {"to": "b"})]


async def test_durable_returns_at_once_without_a_durable_store() -> None:
    settings = SettingsRegistry(Journal(MemoryStore())).namespace("toy")
    settings.set("k", 1)
    with trio.fail_after(1):
        await settings.durable()
