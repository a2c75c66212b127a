"""Fixtures of the federation tests: real broker processes on loopback, started in parallel.

Every broker runs the federation plugin (installed in the workspace, loaded through its entry
point) with a readable ``--broker-id`` equal to its name, so paths in headers and ``route map``
are easy to read in a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.broker_process import BrokerProcess, broker_process

CLI_TIMEOUT = 60

StartBrokers = Callable[..., dict[str, BrokerProcess]]


@pytest.fixture
def start_brokers(tmp_path: Path) -> Iterator[StartBrokers]:
    """``start_brokers(names, *args)``: start one broker per name at once; all are killed at
    the end of the test."""
    started: list[BrokerProcess] = []

    def start(names: list[str], *args: str) -> dict[str, BrokerProcess]:
        brokers = {
            name: broker_process(tmp_path, "--broker-id", name, *args, name=name)
            for name in names
        }
        started.extend(brokers.values())
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(BrokerProcess.start, brokers.values()))
        return brokers

    yield start
    for broker in started:
        broker.kill()


def plugmq(*args: str) -> subprocess.CompletedProcess:
    """``python -m plugmq ARGS`` as a real subprocess, output captured (never raises)."""
    command = [sys.executable, "-m", "plugmq", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=CLI_TIMEOUT)


def plugmq_ok(*args: str) -> str:
    """Run and require exit status 0; return stdout."""
    result = plugmq(*args)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def plugmq_json(*args: str) -> Any:
    """Run with ``--json``; parse stdout."""
    return json.loads(plugmq_ok(*args, "--json"))


def plugmq_error(*args: str) -> str:
    """Run, require a non-zero exit and one error line on stderr; return it."""
    result = plugmq(*args)
    assert result.returncode != 0, f"{args} should fail:\n{result.stdout}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugmq: error: "), result.stderr
    return lines[0]
