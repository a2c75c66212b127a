"""The forwarder test plugin is written against the public contract only."""

from __future__ import annotations

import ast
from pathlib import Path

PLUGIN = Path(__file__).parent / "plugins" / "forwarder.py"
PUBLIC = {"plugmq.inbroker", "plugmq.hookspecs", "plugmq.config"}


def test_the_forwarder_imports_no_engine_internals() -> None:
    imported = set()
    for node in ast.walk(ast.parse(PLUGIN.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    plugmq_modules = {name for name in imported if name.split(".")[0] == "plugmq"}
    assert plugmq_modules and plugmq_modules <= PUBLIC, plugmq_modules
