"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

LoadModuleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--load-module",
        help="Load a plugin: an installed plugin's name, a dotted module or a .py file. "
        "Repeatable.",
        rich_help_panel="Plugins",
    ),
]
AutoloadOption = Annotated[
    bool,
    typer.Option(
        "--no-autoload",
        help="Do not load installed plugins automatically (only --load-module ones).",
        rich_help_panel="Plugins",
    ),
]
