"""``plugmq stat``: live state of a real broker, human tables and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pika
import pytest
from support.admin_cli import cli_json, cli_ok, table_rows
from support.broker_process import BrokerProcess


@pytest.fixture
def busy(broker: BrokerProcess):
    """A consumer holding 2 unacknowledged messages of 'st.q', 3 more ready."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    channel = connection.channel()
    channel.queue_declare("st.q")
    for number in range(5):
        channel.basic_publish("", "st.q", b"%d" % number)
    channel.basic_qos(prefetch_count=2)
    channel.basic_consume("st.q", lambda *args: None, consumer_tag="st.tag")
    connection.process_data_events(0.5)
    yield broker
    connection.close()


def test_queues_show_depth_consumers_and_rates(busy: BrokerProcess) -> None:
    queue = next(q for q in cli_json(busy.url, "stat", "queues") if q["name"] == "st.q")
    assert (queue["messages_ready"], queue["messages_unacknowledged"]) == (3, 2)
    assert queue["consumers"] == 1 and queue["published"] == 5
    row = next(r for r in table_rows(cli_ok(busy.url, "stat", "queues")) if r["queue"] == "st.q")
    assert (row["ready"], row["unacked"], row["total"], row["consumers"]) == ("3", "2", "5", "1")
    assert float(row["publish/s"]) >= 0.0


def test_publish_rate_is_sampled_by_the_broker(broker: BrokerProcess) -> None:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
    channel = connection.channel()
    channel.queue_declare("st.rate")
    command = [sys.executable, "-m", "plugmq", "stat", "queues", "--json", "-b", broker.url]
    cli = None
    started = time.monotonic()
    # Publish for more than one sampling interval before asking, and for as long as the CLI
    # runs: the rate it reads covers a whole second of traffic.
    while cli is None or cli.poll() is None:
        if cli is None and time.monotonic() - started > 1.5:
            cli = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for _ in range(20):
            channel.basic_publish("", "st.rate", b"x")
        connection.process_data_events(0.02)
    connection.close()
    queues = json.loads(cli.stdout.read())
    assert next(q for q in queues if q["name"] == "st.rate")["publish_rate"] > 0


def test_connections_channels_and_consumers(busy: BrokerProcess) -> None:
    connections = table_rows(cli_ok(busy.url, "stat", "connections"))
    assert any(
        r["user"] == "guest" and r["client"] == "Pika Python Client Library" for r in connections
    )
    channels = cli_json(busy.url, "stat", "channels")
    assert any(c["consumers"] == 1 and c["unacknowledged"] == 2 for c in channels)
    consumers = table_rows(cli_ok(busy.url, "stat", "consumers"))
    mine = next(r for r in consumers if r["tag"] == "st.tag")
    assert (mine["queue"], mine["ack"], mine["unacked"]) == ("st.q", "Y", "2")
    assert any(r["queue"] == "plugmq.management" and r["peer"] == "broker" for r in consumers)


def test_exchanges_and_bindings(busy: BrokerProcess) -> None:
    exchanges = {r["exchange"]: r for r in table_rows(cli_ok(busy.url, "stat", "exchanges"))}
    assert exchanges["amq.topic"]["type"] == "topic"
    assert cli_json(busy.url, "stat", "bindings") == []
