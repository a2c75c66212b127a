"""Persistent plugin settings survive kill -9 (issue 11: plugin configuration that persists).

A toy plugin (``plugins/toy_settings.py``) sets values through ``broker.settings("toy")``,
answering only once they are durable; the broker is killed with SIGKILL and restarted on the
same data directory, and the plugin reads them back, deletes included.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.broker_process import broker_process

from plugmq.management.client import ManagementError, management_client

PLUGIN = Path(__file__).parent / "plugins" / "toy_settings.py"
ROUTE = {"source": "amqp://upstream/", "queues": ["a", "b"], "prefetch": 50, "ack": True}


async def test_settings_survive_kill_9_and_core_namespaces_are_refused(tmp_path: Path) -> None:
    broker = broker_process(tmp_path, "--load-module", str(PLUGIN)).start()
    try:
        async with management_client(broker.url) as admin:
            assert await admin.call("toy.get") == {}
            await admin.call("toy.set", key="route/1", value=ROUTE)
            await admin.call("toy.set", key="gone", value="soon")
            await admin.call("toy.set", key="replaced", value=1)
            await admin.call("toy.set", key="replaced", value=[2, "two"])
            assert await admin.call("toy.delete", key="gone") == {"existed": True}
            assert await admin.call("toy.delete", key="never") == {"existed": False}
            for namespace in ("user", "permission", "vhost", "access"):
                with pytest.raises(ManagementError, match="belongs to the broker core"):
                    await admin.call("toy.take", namespace=namespace)
        broker.kill()
        broker.restart()
        async with management_client(broker.url) as admin:
            assert await admin.call("toy.get") == {"replaced": [2, "two"], "route/1": ROUTE}
            await admin.call("toy.set", key="after", value={"restart": 1})
        assert broker.stop() == 0
        broker.restart()
        async with management_client(broker.url) as admin:
            got = await admin.call("toy.get")
            assert got == {"after": {"restart": 1}, "replaced": [2, "two"], "route/1": ROUTE}
    finally:
        broker.stop()
