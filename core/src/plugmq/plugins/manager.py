"""The plugin manager: loading plugins like ``qpidd --load-module`` and a typed facade over hooks.

One :class:`PluginManager` per broker (never a module-level singleton), so one process can run
several brokers. Built-in plugins are registered first, then installed plugins from the
``plugmq.plugins`` entry-point group (unless autoload is off), then every ``--load-module``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from plugmq import hookspecs
from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.plugins.events import Events

if TYPE_CHECKING:
    from plugmq.admission import ConnectionInfo, ConnectionRefusal
    from plugmq.auth import Mechanism
    from plugmq.broker.exchange import Exchange
    from plugmq.ha import HAStrategy
    from plugmq.management.commands import Command
    from plugmq.store.base import Store

ENTRY_POINT_GROUP = "plugmq.plugins"

#: Built-in plugins, registered before any other (pytest's style of explicit built-ins).
BUILTIN_PLUGINS = (
    "plugmq.builtin.core_options",
    "plugmq.builtin.exchanges",
    "plugmq.builtin.auth",
    "plugmq.builtin.memory_store",
    "plugmq.builtin.standalone_ha",
    "plugmq.management.plugin",
)


class PluginLoadError(Exception):
    """A plugin could not be loaded. The message names the plugin and the reason."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``plugmq plugins`` shows about one loaded plugin."""

    name: str
    version: str
    source: str
    hooks: tuple[str, ...]


class PluginManager:
    """Loads plugins and calls hooks with typed methods (one per hook that returns data)."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._info: dict[str, tuple[str, str]] = {}
        self.hook = self._pm.hook
        #: The control-plane events (the only caller of the event hooks).
        self.events = Events(self._pm)

    # -- loading -------------------------------------------------------------------------------

    def load(self, modules: Sequence[str] = (), autoload: bool = True) -> None:
        """Register built-ins, installed plugins (if ``autoload``) and ``modules``, then check.

        Raises :class:`PluginLoadError` naming the first plugin that fails.
        """
        for name in BUILTIN_PLUGINS:
            self._register(importlib.import_module(name), name, "builtin", "builtin")
        if autoload:
            for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                self._load_entry_point(entry_point)
        for spec in modules:
            self.load_module(spec)
        self.check()

    def _load_entry_point(self, entry_point: importlib.metadata.EntryPoint) -> None:
        if entry_point.name in self._info:
            return
        try:
            module = entry_point.load()
        except Exception as error:
            raise PluginLoadError(
                f"plugin '{entry_point.name}' ({entry_point.value}) failed to import: "
                f"{type(error).__name__}: {error}"
            ) from error
        dist = entry_point.dist
        version = dist.version if dist is not None else "unknown"
        self._register(module, entry_point.name, version, "entry point")

    def load_module(self, spec: str) -> None:
        """Load ``spec``: an installed plugin's name, a dotted module, or a ``.py`` file path."""
        if spec.endswith(".py") or "/" in spec:
            module = self._import_path(Path(spec))
            self._register(module, module.__name__, "file", str(spec))
            return
        entry_point = self._find_entry_point(spec)
        if entry_point is not None:
            self._load_entry_point(entry_point)
            return
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as error:
            if error.name and spec.startswith(error.name):
                raise PluginLoadError(
                    f"unknown plugin '{spec}': not an installed plugin "
                    f"({', '.join(self.installed()) or 'none installed'}), module or file"
                ) from error
            raise PluginLoadError(f"plugin '{spec}' failed to import: {error}") from error
        except Exception as error:
            raise PluginLoadError(
                f"plugin '{spec}' failed to import: {type(error).__name__}: {error}"
            ) from error
        self._register(module, spec, getattr(module, "__version__", "module"), "module")

    @staticmethod
    def _find_entry_point(name: str) -> importlib.metadata.EntryPoint | None:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry_point.name == name:
                return entry_point
        return None

    @staticmethod
    def installed() -> list[str]:
        """Names of the plugins installed in this environment (entry points)."""
        return sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))

    @staticmethod
    def _import_path(path: Path) -> ModuleType:
        if not path.is_file():
            raise PluginLoadError(f"plugin file '{path}' does not exist")
        name = "plugmq_file_plugin_" + path.stem
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise PluginLoadError(f"plugin file '{path}' cannot be imported")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise PluginLoadError(
                f"plugin file '{path}' failed to import: {type(error).__name__}: {error}"
            ) from error
        return module

    def _register(self, plugin: Any, name: str, version: str, source: str) -> None:
        if name in self._info or self._pm.is_registered(plugin):
            return
        try:
            self._pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as error:
            raise PluginLoadError(f"plugin '{name}' is invalid: {error}") from error
        self._info[name] = (version, source)

    def check(self) -> None:
        """Fail when a plugin implements a hook that does not exist (a misspelt name), or
        wraps an event hook."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as error:
            raise PluginLoadError(
                f"plugin '{self._pm.get_name(error.plugin)}' implements an unknown hook: {error}"
            ) from error
        wrappers = self.events.check()
        if wrappers:
            raise PluginLoadError(
                f"event hooks cannot be wrappers (each plugin is called on its own): "
                f"{', '.join(wrappers)}"
            )

    # -- introspection -------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names of the loaded plugins, built-ins excluded."""
        return [name for name, (_, source) in self._info.items() if source != "builtin"]

    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin with its version and the hooks it implements."""
        infos = []
        for name, (version, source) in self._info.items():
            plugin = self._pm.get_plugin(name)
            hooks = tuple(sorted(caller.name for caller in self._pm.get_hookcallers(plugin) or ()))
            infos.append(PluginInfo(name, version, source, hooks))
        return infos

    # -- typed hook facade -------------------------------------------------------------------

    def options(self) -> OptionRegistry:
        """Every plugin's flags, registered in load order."""
        registry = OptionRegistry()
        for impl in reversed(self.hook.plugmq_add_options.get_hookimpls()):
            registry.current_owner = impl.plugin_name
            impl.function(options=registry)
        return registry

    def configure(self, config: Config) -> None:
        """Let every plugin validate the configuration (raises ConfigError)."""
        self.hook.plugmq_configure(config=config)

    def exchange_types(self) -> dict[str, type[Exchange]]:
        """Exchange classes by type name; a name registered twice is an error naming both."""
        return self._registry(self.hook.plugmq_exchange_types, "type_name", "exchange type")

    def auth_mechanisms(self) -> list[type[Mechanism]]:
        """SASL mechanism classes in advertising order; duplicates are an error."""
        return list(self._registry(self.hook.plugmq_auth_mechanisms, "name", "mechanism").values())

    def management_commands(self) -> dict[str, Command]:
        """Management commands by name; a name registered twice is an error naming both."""
        return self._registry(self.hook.plugmq_management_commands, "name", "management command")

    def cli_commands(self, admin: Any) -> list[tuple[str, Any]]:
        """Plugins' ``plugmq NAME`` command groups; a name registered twice is an error."""
        groups: list[tuple[str, Any]] = []
        owners: dict[str, str] = {}
        for impl in reversed(self.hook.plugmq_cli_commands.get_hookimpls()):
            for name, app in impl.function(admin=admin) or ():
                if name in owners:
                    raise ConfigError(
                        f"command group '{name}' is registered by both {owners[name]} and "
                        f"{impl.plugin_name}"
                    )
                owners[name] = impl.plugin_name
                groups.append((name, app))
        return groups

    def _registry(self, hook: Any, attribute: str, what: str) -> dict[str, Any]:
        registry: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for impl in reversed(hook.get_hookimpls()):
            for cls in impl.function() or ():
                key = getattr(cls, attribute)
                if key in registry:
                    raise ConfigError(
                        f"{what} '{key}' is registered by both {owners[key]} and {impl.plugin_name}"
                    )
                registry[key] = cls
                owners[key] = impl.plugin_name
        return registry

    def store(self, config: Config) -> Store:
        """The store chosen by the first plugin that returns one.

        Raises :class:`ConfigError` when no loaded plugin provides the store asked for: a broker
        must never start silently without the durability the user chose.
        """
        store = self.hook.plugmq_store(config=config)
        if store is None:
            raise ConfigError(
                f"no loaded plugin provides store '{config.get('store')}' "
                "(install/load its plugin, e.g. --load-module store_bdb, or use --store memory)"
            )
        return store

    def ha_strategy(self, config: Config) -> HAStrategy:
        """The HA strategy chosen by the first plugin that returns one.

        Raises :class:`ConfigError` when no loaded plugin provides the ``--ha`` mode asked for.
        """
        strategy = self.hook.plugmq_ha_strategy(config=config)
        if strategy is None:
            raise ConfigError(
                f"no loaded plugin provides HA mode '{config.get('ha')}' (install/load its "
                "plugin, e.g. --load-module ha_sharedfs, or use --ha standalone)"
            )
        return strategy

    def listeners(self, config: Config) -> list[Any]:
        """Every transport's listener factories, in hook-call order."""
        return flatten(self.hook.plugmq_listeners(config=config))

    def services(self, broker: Any) -> list[Any]:
        """Every plugin's long-running services."""
        return flatten(self.hook.plugmq_services(broker=broker))

    def server_properties(self, broker: Any) -> list[dict[str, Any]]:
        """Every plugin's additions to connection.start's server-properties (copies)."""
        return [dict(extra) for extra in self.hook.plugmq_server_properties(broker=broker) if extra]

    def connection_check(self, broker: Any, info: ConnectionInfo) -> ConnectionRefusal | None:
        """The first plugin's refusal of a new connection, or None."""
        return self.hook.plugmq_connection_check(broker=broker, connection=info)

    def dialer_for(self, scheme: str) -> Any:
        """A transport dialer for URL ``scheme`` or None."""
        return self.hook.plugmq_dialer(scheme=scheme)


def flatten(results: Iterable[Sequence[Any] | None]) -> list[Any]:
    """Flatten a list-returning hook's results, skipping None."""
    return [item for result in results for item in (result or ())]
