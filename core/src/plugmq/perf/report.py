"""Presenting results: a human table for one run, JSON for machines, markdown comparisons."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("scenario", result["scenario"]),
        ("broker", f"{result['broker']['product']} {result['broker']['version']}"),
    ]
    if result["scenario"] == "connections":
        rows += [
            ("connections opened", _fmt(result["opened"])),
            ("failed", _fmt(result["failed"])),
            ("open time total (s)", _fmt(result["open_total_s"], 2)),
            ("opened / s", _fmt(result["opened_per_s"])),
            (
                "open p50 / p99 (ms)",
                f"{_fmt(result['open_p50_ms'], 2)} / {_fmt(result['open_p99_ms'], 2)}",
            ),
            (
                "broker RSS before / after (MiB)",
                f"{_mib(result['broker_rss_before_bytes'])} / "
                f"{_mib(result['broker_rss_after_bytes'])}",
            ),
            ("broker RSS per connection (KiB)", _fmt(result["broker_rss_per_connection_kib"])),
        ]
        return rows
    rows += [
        ("window (s)", _fmt(result["window_s"], 2)),
        ("published / s", _fmt(result["published_per_s"])),
    ]
    if result["confirmed"]:
        rows.append(("confirmed / s", _fmt(result["confirmed_per_s"])))
    rows += [
        ("delivered / s", _fmt(result["delivered_per_s"])),
        ("broker CPU (µs / msg)", _fmt(result["broker_cpu_us_per_msg"])),
        ("broker RSS at end (MiB)", _mib(result["broker_rss_bytes"])),
        (
            "tool CPU producer / consumer",
            f"{result['tool_cpu']['producer']:.0%} / {result['tool_cpu']['consumer']:.0%}",
        ),
        ("all in-flight messages delivered", _fmt(result["drained"])),
    ]
    latency = result.get("latency")
    if latency:
        rows += [
            ("target rate (msg/s)", _fmt(result["rate_target"])),
            (
                "latency p50 / p99 / p99.9 (ms)",
                f"{latency['p50_ms']:.3f} / {latency['p99_ms']:.3f} / {latency['p999_ms']:.3f}",
            ),
            ("latency max (ms)", f"{latency['max_ms']:.3f}"),
        ]
    topic = result.get("topic")
    if topic:
        rows += [
            (
                "topic bindings / keys / queues",
                f"{topic['bindings']} / {topic['keys']} / {topic['queues']}",
            ),
            ("deliveries per message", f"{topic['deliveries_per_message']:.2f}"),
            ("verified against reference matcher", _fmt(topic["verified"])),
        ]
    return rows


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def table(result: dict[str, Any]) -> str:
    """A two-column human table of one scenario's result."""
    rows = _rows(result)
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 2 + max(len(value) for _, value in rows))
    body = "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
    return f"{line}\n{body}\n{line}"


def to_json(result: dict[str, Any] | Sequence[dict[str, Any]]) -> str:
    """The result(s) as JSON (NaN written as null)."""
    return json.dumps(_clean(result), indent=2, sort_keys=True)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
