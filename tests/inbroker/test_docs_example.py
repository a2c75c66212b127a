"""The example of docs/plugins.md, "The in-broker client", works as printed."""

from __future__ import annotations

import re
from pathlib import Path

import trio
from support.in_process import running_broker

from plugmq.inbroker import Delivery, open_client

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _example() -> str:
    section = DOCS.read_text().split("## The in-broker client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the section lost its example"
    return match.group(1)


async def test_the_documented_copier_copies_and_acks(tmp_path: Path) -> None:
    plugin = tmp_path / "copier.py"
    plugin.write_text(_example())
    async with running_broker(tmp_path / "data", str(plugin)) as broker:
        client = open_client(broker)
        properties = {"delivery_mode": 2, "correlation_id": "c-1"}
        for number in range(10):
            client.publish("", "orders", b"%d" % number, properties=properties)
        copies: list[Delivery] = []
        client.consume("orders.copy", copies.append)
        orders = broker.vhosts["/"].queues["orders"]
        with trio.fail_after(5):  # every copy made and every original acknowledged
            while len(copies) < 10 or orders.message_count or orders.consumers[0].unacked:
                await trio.sleep(0.01)
        assert [d.body for d in copies] == [b"%d" % n for n in range(10)]
        assert copies[0].properties.correlation_id == "c-1"
