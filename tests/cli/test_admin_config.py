"""``plugmq config``: qpid-config's job over AMQP, against real broker processes.

Every command runs as a subprocess (``python -m plugmq config ...``); the broker is checked
with pika, a client that knows nothing of plugmq.
"""

from __future__ import annotations

import pika
import pytest
from support.admin_cli import cli_error, cli_json, cli_ok, table_rows
from support.broker_process import BrokerProcess

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _pika(broker: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))


def test_seed_durable_queue_added_by_the_cli_keeps_its_message_across_kill_9(
    durable_broker: BrokerProcess,
) -> None:
    assert "queue 'abc' declared" in cli_ok(
        durable_broker.url, "config", "add", "queue", "abc", "--durable"
    )
    with _pika(durable_broker) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "abc", b"survives", PERSISTENT)
    durable_broker.kill()
    durable_broker.restart()
    with _pika(durable_broker) as connection:
        assert connection.channel().basic_get("abc", auto_ack=True)[2] == b"survives"
    queues = {q["name"]: q for q in cli_json(durable_broker.url, "config", "list", "queues")}
    assert queues["abc"]["durable"] is True


def test_exchange_binding_lifecycle_and_listings(shared_broker: BrokerProcess) -> None:
    url = shared_broker.url
    cli_ok(url, "config", "add", "queue", "cfg.q", "-a", "x-max-length=5")
    cli_ok(url, "config", "add", "exchange", "topic", "cfg.x", "--alternate-exchange", "amq.fanout")
    cli_ok(url, "config", "bind", "cfg.x", "cfg.q", "order.#")
    bindings = cli_json(url, "config", "list", "bindings")
    assert {"exchange": "cfg.x", "destination": "cfg.q", "routing_key": "order.#"}.items() <= next(
        b for b in bindings if b["exchange"] == "cfg.x"
    ).items()
    with _pika(shared_broker) as connection:
        channel = connection.channel()
        channel.basic_publish("cfg.x", "order.new", b"routed")
        assert channel.basic_get("cfg.q", auto_ack=True)[2] == b"routed"
    exchanges = table_rows(cli_ok(url, "config", "list", "exchanges"))
    row = next(r for r in exchanges if r["exchange"] == "cfg.x")
    assert row["type"] == "topic" and row["bindings"] == "1"
    assert "alternate-exchange=amq.fanout" in row["arguments"]
    queues = table_rows(cli_ok(url, "config", "list", "queues"))
    assert next(r for r in queues if r["queue"] == "cfg.q")["arguments"] == "x-max-length=5"
    cli_ok(url, "config", "unbind", "cfg.x", "cfg.q", "order.#")
    assert not [b for b in cli_json(url, "config", "list", "bindings") if b["exchange"] == "cfg.x"]
    cli_ok(url, "config", "del", "exchange", "cfg.x")
    assert "deleted (0 messages)" in cli_ok(url, "config", "del", "queue", "cfg.q")
    assert "cfg.q" not in {q["name"] for q in cli_json(url, "config", "list", "queues")}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("config", "del", "queue", "no.such"), "no queue 'no.such' in vhost '/'"),
        (("config", "del", "exchange", "no.such"), "no exchange 'no.such' in vhost '/'"),
        (("config", "add", "exchange", "nosuchtype", "x1"), "unknown exchange type 'nosuchtype'"),
        (("config", "bind", "amq.topic", "no.such", "k"), "no queue 'no.such'"),
        (("config", "del", "queue", "plugmq.management"), "reserved for the management"),
        (("config", "list", "queues", "--vhost", "/nope"), "no vhost '/nope'"),
    ],
)
def test_refused_requests_are_one_error_line(
    shared_broker: BrokerProcess, args: tuple[str, ...], expected: str
) -> None:
    assert expected in cli_error(shared_broker.url, *args)


def test_inequivalent_redeclare_reports_rabbitmqs_error(shared_broker: BrokerProcess) -> None:
    cli_ok(shared_broker.url, "config", "add", "queue", "cfg.durable", "--durable")
    error = cli_error(shared_broker.url, "config", "add", "queue", "cfg.durable")
    assert "PRECONDITION_FAILED - inequivalent arg 'durable'" in error


def test_unreachable_broker_and_bad_urls(shared_broker: BrokerProcess) -> None:
    assert "cannot connect to the broker" in cli_error(
        "amqp://guest:guest@127.0.0.1:1/", "config", "list", "queues"
    )
    assert "not an AMQP URL" in cli_error("http://x/", "config", "list", "queues")


def test_failover_list_uses_the_reachable_broker(shared_broker: BrokerProcess) -> None:
    urls = ["amqp://guest:guest@127.0.0.1:1/", shared_broker.url]
    assert any(q["name"] == "plugmq.management" for q in cli_json(urls, "config", "list", "queues"))
