"""An in-process broker (Berkeley DB store, TCP on a free loopback port) for in-broker tests.

The in-broker client runs inside the broker's trio loop, so these tests run the broker in the
test's own loop: real journal, real store on disk, real queues; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from plugmq.broker.broker import Broker
from plugmq.config import Config
from plugmq.plugins.manager import PluginManager


@asynccontextmanager
async def running_broker(data_dir: Path, *modules: str, **overrides: Any) -> AsyncIterator[Broker]:
    """Start a broker (with plugin ``modules``) in this trio run; shut it down cleanly when the
    block ends."""
    plugins = PluginManager()
    plugins.load(["transport_tcp", "store_bdb", *modules], autoload=False)
    settings = {"data_dir": str(data_dir), "port": 0, "interface": "127.0.0.1", **overrides}
    config = Config.defaults(plugins.options(), **settings)
    plugins.configure(config)
    broker = Broker(config, plugins)
    async with trio.open_nursery() as nursery:
        await nursery.start(broker.run)
        yield broker
        broker.shutdown()


@pytest.fixture
async def live_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    """A running in-process broker with the BDB store (so durability takes real time)."""
    async with running_broker(tmp_path) as running:
        yield running
