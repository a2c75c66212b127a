"""Plugins use only the public contract: nothing under ``plugmq.broker`` (the engine's own).

Checked by reading imports (an import-linter-style check): every distribution under plugins/,
the examples, and every test plugin (``tests/<area>/plugins/*.py``, the toy HA strategy and
replicator, the event counter, the forwarder...). ``plugmq.api`` re-exports what they need.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import plugmq.api

ROOT = Path(__file__).resolve().parent.parent
PRIVATE = "plugmq.broker"
PLUGIN_FILES = sorted(
    [
        *ROOT.glob("plugins/*/src/**/*.py"),
        *ROOT.glob("examples/*.py"),
        *ROOT.glob("tests/*/plugins/*.py"),  # tests/ha/plugins/toy_ha.py...
        *ROOT.glob("tests/*/*/plugins/*.py"),
    ]
)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_the_check_sees_plugins_and_test_plugins() -> None:
    names = {path.name for path in PLUGIN_FILES}
    assert {"toy_ha.py", "toy_replicator.py", "random_exchange.py", "plugin.py"} <= names


def test_the_check_catches_a_private_import(tmp_path: Path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from plugmq.broker.vhost import VHost\nimport plugmq.broker.queue\n")
    assert [m for _, m in _imported_modules(sneaky) if m.startswith(PRIVATE)]


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugin_imports_no_engine_internals(path: Path) -> None:
    private = [
        f"line {line}: {module}"
        for line, module in _imported_modules(path)
        if module == PRIVATE or module.startswith(PRIVATE + ".")
    ]
    assert not private, f"{path.relative_to(ROOT)} imports engine internals: {private}"


def test_api_exports_resolve() -> None:
    for name in plugmq.api.__all__:
        assert getattr(plugmq.api, name) is not None
