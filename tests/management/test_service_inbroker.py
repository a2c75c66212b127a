"""The management service on the in-broker client, seen from a real management client."""

from __future__ import annotations

from pathlib import Path

from support.in_process import running_broker, tcp_url

from plugmq.inbroker import Delivery, open_client
from plugmq.management import protocol
from plugmq.management.client import management_client
from plugmq.management.service import PREFETCH


async def test_listings_count_in_broker_consumers(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        client = open_client(broker)
        client.declare_queue("held")
        held: list[Delivery] = []
        client.consume("held", held.append, prefetch=3, tag="holder")
        for number in range(5):
            client.publish("", "held", b"%d" % number)
        async with management_client(tcp_url(broker)) as admin:
            queues = {q["name"]: q for q in await admin.call("queue.list")}
            consumers = {c["tag"]: c for c in await admin.call("consumer.list")}
        assert queues["held"]["messages_ready"] == 2
        assert queues["held"]["messages_unacknowledged"] == 3
        assert consumers["holder"]["peer"] == "broker" and consumers["holder"]["prefetch"] == 3
        service = consumers[protocol.QUEUE]
        assert (service["queue"], service["prefetch"]) == (protocol.QUEUE, PREFETCH)
        assert service["exclusive"] and service["ack_required"]


async def test_entity_commands_act_through_the_target_vhosts_client(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        async with management_client(tcp_url(broker)) as admin:
            await admin.call("vhost.add", name="/other")
            await admin.call("queue.add", name="q", durable=True, vhost="/other")
            await admin.call("exchange.add", name="x", type="fanout", vhost="/other")
            await admin.call("binding.add", exchange="x", destination="q", vhost="/other")
        assert broker.journal.durable_seq == broker.journal.last_seq, "answered once durable"
        vhost = broker.vhosts["/other"]
        assert vhost.queues["q"].durable
        assert [b.destination.name for b in vhost.exchanges["x"].bindings()] == ["q"]
