"""The ``plugmq`` command line (typer).

Plugins contribute flags to ``plugmq broker``, so the command line is built in two steps, like
pytest's ``consider_preparse``: the arguments are first scanned for ``--load-module`` and
``--no-autoload``; the plugins are loaded; then the typer app is built with every loaded
plugin's flags and parses the arguments for real.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import typer

from plugmq.cli.admin import Admin
from plugmq.cli.broker_command import make_broker_command
from plugmq.cli.config_command import make_config_app
from plugmq.cli.perf_command import make_perf_command
from plugmq.cli.permissions_command import make_permissions_app
from plugmq.cli.plugins_command import make_plugins_command
from plugmq.cli.prescan import prescan
from plugmq.cli.stat_command import make_stat_app
from plugmq.cli.user_command import make_user_app
from plugmq.cli.vhost_command import make_vhost_app
from plugmq.config import ConfigError
from plugmq.plugins.manager import PluginLoadError, PluginManager


def build_app(plugins: PluginManager) -> typer.Typer:
    """The typer application with every loaded plugin's flags."""
    app = typer.Typer(
        name="plugmq",
        help="plugmq: an AMQP 0-9-1 message broker with a small trio core and pluggy plugins.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.command("broker", help="Run a broker. Plugins add flags; see the groups below.")(
        make_broker_command(plugins)
    )
    app.command("plugins", help="List loaded plugins, their versions and hooks.")(
        make_plugins_command(plugins)
    )
    app.command("perf", help="Benchmark an AMQP 0-9-1 broker (PerfTest-like scenarios).")(
        make_perf_command()
    )
    admin = Admin(plugins)
    _add_admin_commands(app, admin)
    builtin = {"broker", "plugins", "perf", "config", "stat", "user", "vhost", "permissions"}
    for name, group in plugins.cli_commands(admin):
        if name in builtin:
            raise ConfigError(f"a plugin's command group '{name}' clashes with a built-in command")
        app.add_typer(group, name=name, rich_help_panel="Plugins")
    return app


def _add_admin_commands(app: typer.Typer, admin: Admin) -> None:
    """The remote admin groups: requests over AMQP to a broker's management service."""
    app.add_typer(make_config_app(admin), name="config", rich_help_panel="Administration")
    app.add_typer(make_stat_app(admin), name="stat", rich_help_panel="Administration")
    app.add_typer(make_user_app(admin), name="user", rich_help_panel="Administration")
    app.add_typer(make_vhost_app(admin), name="vhost", rich_help_panel="Administration")
    app.add_typer(make_permissions_app(admin), name="permissions", rich_help_panel="Administration")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one clear error line and exit (never a traceback for a user mistake)."""
    typer.echo(f"plugmq: error: {message}", err=True)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``plugmq`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    modules, autoload = prescan(args)
    plugins = PluginManager()
    try:
        plugins.load(modules, autoload=autoload)
        app = build_app(plugins)
    except (PluginLoadError, ConfigError) as error:
        fail(str(error))
    app(args=args, prog_name="plugmq")


if __name__ == "__main__":
    main()
