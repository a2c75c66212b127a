"""Finding plugin flags before the real parse (pytest's ``consider_preparse``)."""

from __future__ import annotations

from collections.abc import Sequence


def prescan(args: Sequence[str]) -> tuple[list[str], bool]:
    """Return the ``--load-module`` values and whether autoload is on, from raw arguments."""
    modules: list[str] = []
    autoload = True
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            break
        if arg == "--no-autoload":
            autoload = False
        elif arg == "--load-module" and position + 1 < len(args):
            modules.append(args[position + 1])
            position += 1
        elif arg.startswith("--load-module="):
            modules.append(arg.split("=", 1)[1])
        position += 1
    return modules, autoload
