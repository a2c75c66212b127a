"""Flags and configuration: the registry plugins add flags to, and the parsed result.

Plugins register flags in :func:`plugmq.hookspecs.plugmq_add_options`; the CLI turns every
registered :class:`Option` into a typer option of ``plugmq broker``; values come from the
command line, then the ``--config`` TOML file, then the option's default (flags win).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration value is wrong. The message is shown to the user as it is."""


@dataclass(frozen=True)
class Option:
    """One broker flag.

    ``flag`` is the long flag (``--rdma-port``); its attribute name on :class:`Config` is the
    flag without dashes, dashes turned into underscores (``rdma_port``). ``type`` is one of
    ``bool``, ``int``, ``float``, ``str``, ``Path``; a ``bool`` flag also gets ``--no-...``.
    ``multiple`` flags may be given several times and hold a list.
    """

    flag: str
    type: type
    default: Any
    help: str
    owner: str
    group: str = "Broker"
    multiple: bool = False
    envvar: str | None = None

    @property
    def name(self) -> str:
        """The attribute name on :class:`Config`."""
        return self.flag.lstrip("-").replace("-", "_")


class OptionRegistry:
    """Collects the flags registered by plugins (see ``plugmq_add_options``)."""

    def __init__(self) -> None:
        self._options: dict[str, Option] = {}
        self.current_owner = "plugmq"

    def add(
        self,
        flag: str,
        *,
        type: type = str,
        default: Any = None,
        help: str,
        group: str | None = None,
        multiple: bool = False,
        envvar: str | None = None,
    ) -> None:
        """Register ``flag``. Raises :class:`ConfigError` if another plugin registered it."""
        if not flag.startswith("--"):
            raise ConfigError(f"flag {flag!r} of plugin {self.current_owner} must start with --")
        option = Option(
            flag,
            type,
            default,
            help,
            self.current_owner,
            group or self.current_owner,
            multiple,
            envvar,
        )
        existing = self._options.get(option.name)
        if existing is not None:
            raise ConfigError(
                f"flag {flag} is registered by both {existing.owner} and {option.owner}"
            )
        self._options[option.name] = option

    def __iter__(self) -> Iterator[Option]:
        return iter(self._options.values())

    def __contains__(self, name: str) -> bool:
        return name in self._options

    def __getitem__(self, name: str) -> Option:
        return self._options[name]


class Config:
    """Parsed configuration: one attribute per registered flag (``config.port``)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.__dict__.update(values)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, or ``default`` when no plugin registered that flag."""
        return self.__dict__.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        """Every value, for logging at start-up."""
        return dict(self.__dict__)

    @classmethod
    def defaults(cls, registry: OptionRegistry, **overrides: Any) -> Config:
        """A configuration of every default, with ``overrides`` (used by tests and embedding)."""
        values = {option.name: option.default for option in registry}
        unknown = set(overrides) - set(values)
        if unknown:
            raise ConfigError(f"unknown options: {', '.join(sorted(unknown))}")
        values.update(overrides)
        return cls(values)


def load_config_file(path: Path, registry: OptionRegistry) -> dict[str, Any]:
    """Read a TOML config file whose keys are flag names (``rdma-port = 5673`` or ``rdma_port``).

    Raises :class:`ConfigError` for an unreadable file or an unknown key.
    """
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in registry:
            raise ConfigError(f"config file {path}: unknown option {key!r}")
        option = registry[name]
        values[name] = _coerce(option, value, path)
    return values


def _coerce(option: Option, value: Any, path: Path) -> Any:
    if option.multiple:
        if not isinstance(value, list):
            value = [value]
        return [_coerce_one(option, item, path) for item in value]
    return _coerce_one(option, value, path)


def _coerce_one(option: Option, value: Any, path: Path) -> Any:
    if value is None:
        return None
    try:
        if option.type is bool and not isinstance(value, bool):
            raise TypeError("expected true or false")
        return option.type(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config file {path}: {option.name} = {value!r}: {error}") from error
