"""Fixtures of the federation tests: real broker processes on loopback, started in parallel.

Every broker runs the federation plugin (installed in the workspace, loaded through its entry
point) with a readable ``--broker-id`` equal to its name, so paths in headers and ``route map``
are easy to read in a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess, broker_process

StartBrokers = Callable[..., dict[str, BrokerProcess]]

StartBrokers = Callable[..., dict[str, BrokerProcess]]


@pytest.fixture
def start_brokers(tmp_path: Path) -> Iterator[StartBrokers]:
    """``start_brokers(names, *args)``: start one broker per name at once; all are killed at
    the end of the test."""
    started: list[BrokerProcess] = []

    def start(names: list[str], *args: str) -> dict[str, BrokerProcess]:
        brokers = {
            name: broker_process(tmp_path, "--broker-id", name, *args, name=name) for name in names
        }
        started.extend(brokers.values())
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(BrokerProcess.start, brokers.values()))
        return brokers

    yield start
    for broker in started:
        broker.kill()
