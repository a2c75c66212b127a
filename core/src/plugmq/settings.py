"""Persistent plugin settings: a plugin's own durable key/value records, through the journal.

A plugin keeps what must survive a restart (federation routes, HA settings) in its own
namespace::

    settings = broker.settings("federation")
    settings.set("route/orders", {"source": "amqp://a", "queue": "orders"})
    await settings.durable()          # on disk (and replicated) from here on
    settings.get("route/orders")
    for key, value in settings.items(): ...
    settings.delete("route/orders")

Each change is journaled as a :class:`plugmq.store.records.ConfigSet` record in the plugin's
namespace, in order with every other durable change, and recovery fills the namespace back
before plugins' services start. Values are plain data, checked when set: ``None``, bool, int,
float, str, bytes, and lists, tuples and dicts (with str keys) of those, which every store
and replication plugin can encode. The core's own namespaces (vhosts, users, permissions) are
refused: they have their own APIs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio

from plugmq.access import NAMESPACES as ACCESS_NAMESPACES
from plugmq.access import VHOST
from plugmq.store.records import ConfigSet

if TYPE_CHECKING:
    from plugmq.journal import Journal

#: Namespaces of the core's own configuration records, refused to plugins.
CORE_NAMESPACES = frozenset({VHOST, *ACCESS_NAMESPACES})
#: Longest namespace or key, in UTF-8 bytes (stores prefix names with a 2-byte length).
MAX_NAME_BYTES = 1024
#: Deepest nesting of containers in a value.
MAX_DEPTH = 32

_SCALARS = (bool, int, float, str, bytes)


class SettingsError(ValueError):
    """A namespace, key or value a plugin may not store; the message says which and why."""


class PluginSettings:
    """The durable settings of one plugin namespace (get them with ``broker.settings(name)``).

    Reads come from memory. :meth:`set` and :meth:`delete` take effect at once in memory and
    are journaled; :meth:`durable` waits until every change made so far is on disk. A change
    is durable in the order it was made, with the broker's other durable changes.
    """

    def __init__(self, namespace: str, journal: Journal) -> None:
        self.namespace = namespace
        self._journal = journal
        self._values: dict[str, Any] = {}
        self._last_seq = 0

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (a copy: changing it changes nothing stored), or ``default``."""
        if key not in self._values:
            return default
        return copy.deepcopy(self._values[key])

    def items(self) -> list[tuple[str, Any]]:
        """Every ``(key, value)`` of the namespace, sorted by key (values are copies)."""
        return [(key, copy.deepcopy(self._values[key])) for key in sorted(self._values)]

    def __contains__(self, key: object) -> bool:
        """True when ``key`` is set."""
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        """The keys, sorted."""
        return iter(sorted(self._values))

    def __len__(self) -> int:
        """How many keys are set."""
        return len(self._values)

    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to ``value`` (plain data, see the module docstring) and journal it.

        Raises :class:`SettingsError` for a bad key or value; nothing is changed then.
        """
        _check_name("key", key)
        if value is None:
            raise SettingsError(f"setting {self.namespace}/{key}: use delete() to remove a key")
        stored = _plain_copy(value, f"{self.namespace}/{key}", 0)
        self._values[key] = stored
        self._journal_change(ConfigSet(self.namespace, key, stored))

    def delete(self, key: str) -> bool:
        """Remove ``key`` (journaled); returns False when it was not set (nothing journaled)."""
        if self._values.pop(key, _MISSING) is _MISSING:
            return False
        self._journal_change(ConfigSet(self.namespace, key, None))
        return True

    async def durable(self) -> None:
        """Wait until every change made so far through this object is durable.

        Returns at once with a store that keeps nothing (the in-memory store).
        """
        seq = self._last_seq
        if seq == 0 or seq <= self._journal.durable_seq:
            return
        done = trio.Event()
        self._journal.when_durable(seq, done.set)
        await done.wait()

    def _journal_change(self, record: ConfigSet) -> None:
        seq = self._journal.append(record)
        if seq:
            self._last_seq = seq

    def restore(self, record: ConfigSet) -> None:
        """Apply a recovered record (recovery's use; not journaled again)."""
        if record.value is None:
            self._values.pop(record.key, None)
        else:
            self._values[record.key] = record.value

    def __repr__(self) -> str:
        return f"<PluginSettings {self.namespace!r} {len(self._values)} keys>"


class SettingsRegistry:
    """Every plugin namespace of one broker; recovery fills it, plugins ask it for theirs."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._namespaces: dict[str, PluginSettings] = {}

    def namespace(self, name: str) -> PluginSettings:
        """The settings of namespace ``name`` (the same object every time).

        :class:`SettingsError` for an empty or overlong name, or one of the core's namespaces.
        """
        settings = self._namespaces.get(name)
        if settings is None:
            _check_name("namespace", name)
            if name in CORE_NAMESPACES:
                raise SettingsError(
                    f"namespace {name!r} belongs to the broker core "
                    f"(reserved: {', '.join(sorted(CORE_NAMESPACES))}); choose your plugin's name"
                )
            settings = self._namespaces[name] = PluginSettings(name, self._journal)
        return settings

    def clear(self) -> None:
        """Forget every value before a new recovery (a promotion re-reads the store); the
        objects plugins hold stay valid and are filled again."""
        for settings in self._namespaces.values():
            settings._values.clear()
            settings._last_seq = 0

    def restore(self, record: ConfigSet) -> None:
        """Apply a recovered ``ConfigSet`` of a plugin namespace (core ones are not passed).

        Not validated again: what was stored is given back as it was.
        """
        settings = self._namespaces.get(record.namespace)
        if settings is None:
            settings = PluginSettings(record.namespace, self._journal)
            self._namespaces[record.namespace] = settings
        settings.restore(record)


_MISSING = object()


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise SettingsError(f"a settings {what} must be a non-empty str, not {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise SettingsError(f"settings {what} {name[:40]!r}... is longer than {MAX_NAME_BYTES} B")


def _plain_copy(value: Any, where: str, depth: int) -> Any:
    """A copy of ``value`` made of plain data only, or :class:`SettingsError` naming the part."""
    if value is None or type(value) in _SCALARS:
        return value
    if depth >= MAX_DEPTH:
        raise SettingsError(f"setting {where}: nested deeper than {MAX_DEPTH} levels")
    if type(value) in (list, tuple):
        items = [_plain_copy(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        return items if type(value) is list else tuple(items)
    if type(value) is dict:
        copied = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SettingsError(f"setting {where}: dict keys must be str, not {key!r}")
            copied[key] = _plain_copy(item, f"{where}.{key}", depth + 1)
        return copied
    raise SettingsError(
        f"setting {where}: {type(value).__name__} is not plain data "
        "(use None, bool, int, float, str, bytes, list, tuple or dict with str keys)"
    )
