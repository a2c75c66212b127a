"""Fixtures of the discovery tests: real brokers on loopback, a multicast port of each test's own.

Multicast runs on the loopback interface (``--discovery-interface 127.0.0.1``): on Linux a
socket joined to the group there, with ``IP_MULTICAST_IF``/``IP_MULTICAST_LOOP``, hears every
other such socket of the host, with no privileges and no network namespace. Each test takes a
free UDP port, so tests running at once never hear each other's announcements.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess, broker_process
from support.multicast import free_udp_port

StartBroker = Callable[..., BrokerProcess]


@pytest.fixture
def multicast() -> str:
    """``GROUP:PORT`` of this test's own."""
    return f"239.255.77.77:{free_udp_port()}"


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[StartBroker]:
    """``start_broker(name, *args)``: a started broker, killed at the end of the test."""
    started: list[BrokerProcess] = []

    def start(name: str, *args: str, ready_event: str = "broker_active") -> BrokerProcess:
        broker = broker_process(tmp_path, *args, name=name)
        started.append(broker)
        return broker.start(ready_event=ready_event)

    yield start
    for broker in started:
        broker.kill()


@pytest.fixture
def network_path() -> str:
    """A ``--discovery-zk-path`` of this test's own."""
    return f"/plugmq/test-network-{uuid.uuid4().hex[:12]}"
