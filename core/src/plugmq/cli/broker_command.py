"""``plugmq broker``: a typer command whose flags come from the loaded plugins."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import structlog
import trio
import typer

from plugmq import gc_tuning
from plugmq.broker.broker import Broker
from plugmq.cli.common import AutoloadOption, LoadModuleOption
from plugmq.config import Config, ConfigError, Option, OptionRegistry, load_config_file
from plugmq.logging import configure_logging
from plugmq.plugins.manager import PluginManager
from plugmq.store.base import StoreError

log = structlog.get_logger("plugmq.cli")

ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of flag values (flags given here win).",
        rich_help_panel="Broker",
    ),
]


def make_broker_command(plugins: PluginManager) -> Callable[..., None]:
    """Build the ``broker`` command with one typer option per registered flag."""
    registry = plugins.options()

    def broker(ctx: typer.Context, **values: Any) -> None:
        config = _resolve(ctx, registry, values)
        _run(plugins, config)

    parameters = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        _parameter("config_file", ConfigFileOption, None),
        _parameter("load_module", LoadModuleOption, None),
        _parameter("no_autoload", AutoloadOption, False),
    ]
    parameters += [
        _parameter(option.name, _annotation(option), option.default) for option in registry
    ]
    broker.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    broker.__annotations__ = {p.name: p.annotation for p in parameters}
    return broker


def _parameter(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _annotation(option: Option) -> Any:
    flags = [option.flag]
    if option.type is bool:
        flags = [f"{option.flag}/--no-{option.flag[2:]}"]
    value_type: Any = list[option.type] if option.multiple else option.type  # type: ignore[name-defined]
    info = typer.Option(
        *flags,
        help=option.help,
        rich_help_panel=option.group,
        envvar=option.envvar,
        show_default=True,
    )
    return Annotated[value_type, info]


def _resolve(ctx: typer.Context, registry: OptionRegistry, values: dict[str, Any]) -> Config:
    """Command-line values win over the config file, which wins over defaults."""
    config_file = values.pop("config_file")
    values.pop("load_module")
    values.pop("no_autoload")
    if config_file is not None:
        try:
            from_file = load_config_file(config_file, registry)
        except ConfigError as error:
            _fail(str(error))
        for name, value in from_file.items():
            source = ctx.get_parameter_source(name)
            if source is None or source.name != "COMMANDLINE":
                values[name] = value
    return Config(values)


def _run(plugins: PluginManager, config: Config) -> None:
    try:
        plugins.configure(config)
        configure_logging(config.log_level, config.log_json)
        broker = Broker(config, plugins)
    except ConfigError as error:
        _fail(str(error))
    try:
        trio.run(_serve, broker)
    except BaseException as raised:
        _report(_unwrap(raised))


def _unwrap(error: BaseException) -> BaseException:
    """The single error inside trio's nested exception groups, if there is exactly one."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _report(error: BaseException) -> None:
    """Turn user-facing failures into one error line; re-raise anything else (a bug)."""
    if isinstance(error, StoreError):
        _fail(f"store: {error}", code=1)
    if isinstance(error, ConfigError):
        _fail(str(error))
    if isinstance(error, OSError):
        _fail(f"{error.strerror or error}", code=1)
    if isinstance(error, KeyboardInterrupt):
        raise SystemExit(130) from None
    if isinstance(error, SystemExit):
        raise error
    raise error


async def _serve(broker: Broker) -> None:
    gc_tuning.tune_for_broker()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(broker.stop_on_signals)
        nursery.start_soon(_freeze_when_active, broker)
        await broker.run()
        nursery.cancel_scope.cancel()


async def _freeze_when_active(broker: Broker) -> None:
    await broker.active.wait()
    gc_tuning.freeze_startup_objects()


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"plugmq: error: {message}", err=True)
    raise SystemExit(code)
