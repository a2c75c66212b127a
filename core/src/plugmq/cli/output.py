"""Printing results: aligned tables for people, JSON for programs (``--json``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import typer

#: A column: its heading and the key of the row dict it shows.
Column = tuple[str, str]


def emit(result: Any, as_json: bool, show: Callable[[Any], None]) -> None:
    """Print ``result`` as JSON, or with ``show`` for people."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        show(result)


def cell(value: Any) -> str:
    """One table cell: booleans as Y or blank, tables as k=v, floats with one decimal."""
    if isinstance(value, bool):
        return "Y" if value else ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, dict):
        return ",".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(cell(v) for v in value)
    return "" if value is None else str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """An aligned text table; numbers are right-aligned, text left-aligned."""
    cells = [[cell(row.get(key)) for _, key in columns] for row in rows]
    numeric = [
        all(
            isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
            for row in rows
        )
        for _, key in columns
    ]
    widths = [
        max([len(heading), *(len(line[i]) for line in cells)])
        for i, (heading, _) in enumerate(columns)
    ]
    rule = "  ".join("=" * width for width in widths)
    lines = [_line([heading for heading, _ in columns], widths, [False] * len(columns)), rule]
    lines += [_line(line, widths, numeric) for line in cells]
    return "\n".join(lines)


def _line(values: Sequence[str], widths: Sequence[int], right: Sequence[bool]) -> str:
    parts = [
        value.rjust(width) if align else value.ljust(width)
        for value, width, align in zip(values, widths, right, strict=True)
    ]
    return "  ".join(parts).rstrip()


def show_table(columns: Sequence[Column]) -> Callable[[Any], None]:
    """A ``show`` function printing a list of rows as a table (or a note when empty)."""

    def show(rows: Any) -> None:
        typer.echo(table(rows, columns) if rows else "(none)")

    return show


def show_message(template: str) -> Callable[[Any], None]:
    """A ``show`` function printing ``template`` formatted with the result's fields."""

    def show(result: Any) -> None:
        typer.echo(template.format(**result) if isinstance(result, dict) else template)

    return show
