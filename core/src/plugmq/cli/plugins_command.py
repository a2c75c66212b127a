"""``plugmq plugins``: what is loaded, in which version, implementing which hooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated

import typer

from plugmq.cli.common import AutoloadOption, LoadModuleOption
from plugmq.plugins.manager import PluginManager


def make_plugins_command(plugins: PluginManager) -> Callable[..., None]:
    """The command function, closed over the already loaded plugins."""

    def plugins_command(
        load_module: LoadModuleOption = None,
        no_autoload: AutoloadOption = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        builtin: Annotated[bool, typer.Option("--builtin", help="Show built-ins too.")] = False,
    ) -> None:
        infos = [i for i in plugins.describe() if builtin or i.source != "builtin"]
        if as_json:
            typer.echo(json.dumps([asdict(info) for info in infos], indent=2))
            return
        if not infos:
            typer.echo("no plugins loaded")
        for info in infos:
            typer.echo(f"{info.name} {info.version} ({info.source})")
            typer.echo(f"    hooks: {', '.join(info.hooks)}")

    return plugins_command
