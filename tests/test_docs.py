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


def _parameters(hook: str) -> list[str]:
    return list(inspect.signature(getattr(hookspecs, hook)).parameters)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_plugins_md(hook: str) -> None:
    """The heading carries the hook's exact parameter list, so a changed signature fails."""
    heading = f"#### `{hook}({', '.join(_parameters(hook))})`"
    assert heading in (DOCS / "plugins.md").read_text()


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_parameter_is_described_in_its_docstring(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    for name in _parameters(hook):
        assert f":param {name}:" in doc, f"{hook}: describe parameter '{name}'"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 40, f"{hook} needs a docstring saying when it is called"
