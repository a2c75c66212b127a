"""A broker running inside the test's own trio loop (for in-broker client tests).

The in-broker client runs on the broker's trio thread, so these tests run the broker in the
test's loop: real journal, real Berkeley DB store on disk, real TCP listener on a free
loopback port; nothing is mocked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from plugmq.broker.broker import Broker
from plugmq.config import Config
from plugmq.plugins.manager import PluginManager


@asynccontextmanager
async def running_broker(data_dir: Path, *modules: str, **overrides: Any) -> AsyncIterator[Broker]:
    """Start a broker (with plugin ``modules``) in this trio run; shut it down cleanly when the
    block ends. ``overrides`` are configuration values (``memory_high_watermark=5000``)."""
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


def tcp_url(broker: Broker, vhost: str = "/") -> str:
    """The AMQP URL of the broker's TCP listener, as guest."""
    address = next(a for a in broker.addresses if a.startswith("tcp://"))
    port = address.rsplit(":", 1)[1]
    path = "/" + vhost.replace("/", "%2F") if vhost != "/" else "/"
    return f"amqp://guest:guest@127.0.0.1:{port}{path}"
