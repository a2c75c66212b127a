"""Running the ``plugmq`` admin commands as real subprocesses against a test broker."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

CLI_TIMEOUT = 60


def run_cli(url: str | list[str], *args: str, timeout_s: float = 10) -> subprocess.CompletedProcess:
    """``python -m plugmq ARGS --broker URL...`` with its output captured (never raises)."""
    urls = [url] if isinstance(url, str) else url
    brokers = [arg for u in urls for arg in ("--broker", u)]
    command = [sys.executable, "-m", "plugmq", *args, *brokers, "--timeout", str(timeout_s)]
    return subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT)


def cli_ok(url: str | list[str], *args: str) -> str:
    """Run and require exit status 0; return stdout."""
    result = run_cli(url, *args)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def cli_json(url: str | list[str], *args: str) -> Any:
    """Run with ``--json`` and parse stdout."""
    return json.loads(cli_ok(url, *args, "--json"))


def cli_error(url: str | list[str], *args: str) -> str:
    """Run, require a non-zero exit and one error line on stderr; return that line."""
    result = run_cli(url, *args)
    assert result.returncode != 0, f"{args} should fail:\n{result.stdout}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugmq: error: "), result.stderr
    return lines[0]


def table_rows(output: str) -> list[dict[str, str]]:
    """Parse a human table (heading line, ``===`` rule, rows) by the rule's column spans."""
    lines = output.rstrip("\n").splitlines()
    rule = lines[1]
    spans, start = [], 0
    for part in rule.split("  "):
        if part:
            spans.append((start, start + len(part)))
        start += len(part) + 2

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in spans]

    headings = cells(lines[0])
    return [dict(zip(headings, cells(line), strict=True)) for line in lines[2:]]
