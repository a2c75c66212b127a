"""Documentation stays in step with the code (datasette's tests/test_docs.py idea)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from plugmq import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOKS = sorted(
    name
    for name, value in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("plugmq_")
)


def test_hookspecs_are_found() -> None:
    assert "plugmq_store" in HOOKS and len(HOOKS) >= 15


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_plugins_md(hook: str) -> None:
    assert f"#### `{hook}(" in (DOCS / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 40, f"{hook} needs a docstring saying when it is called"
