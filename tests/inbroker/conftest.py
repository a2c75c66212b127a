"""Fixtures of the in-broker client tests: a broker running in the test's trio loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.in_process import running_broker

from plugmq.broker.broker import Broker


@pytest.fixture
async def live_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A running in-process broker with the BDB store (so durability takes real time)."""
    async with running_broker(tmp_path) as running:
        yield running
