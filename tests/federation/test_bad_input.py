"""Bad input: clear errors in the CLI and in ``link list``, never a crash, never a silent drop.

An unreachable remote, a wrong password, an exchange missing at either end, a route that
already exists, two brokers with the same id. The broker keeps serving after each.
"""

from __future__ import annotations

from support.federation import free_port, manage, plugmq_error, plugmq_json, plugmq_ok

from .conftest import StartBrokers


def test_route_errors_are_clear_and_the_broker_stays_up(start_brokers: StartBrokers) -> None:
    brokers = start_brokers(["a", "b"], "--store", "memory")
    a, b = brokers["a"], brokers["b"]
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"

    error = plugmq_error("route", "add", a.url, nowhere, "amq.topic", "x", "--wait", "2")
    assert "link is down" in error and "cannot connect" in error, error
    links = plugmq_json("link", "list", a.url)
    assert links[0]["state"] == "down" and "cannot connect" in links[0]["last_error"], links

    wrong = b.url.replace("guest:guest", "guest:wrong")
    error = plugmq_error("route", "add", a.url, wrong, "amq.topic", "y")
    assert "403" in error or "ACCESS_REFUSED" in error, error

    error = plugmq_error("route", "add", a.url, b.url, "no.such.exchange", "z")
    assert "no exchange 'no.such.exchange'" in error, error  # missing on DEST (here)

    plugmq_ok("config", "add", "exchange", "topic", "only.here", "--broker", a.url)
    error = plugmq_error("route", "add", a.url, b.url, "only.here", "k")
    assert "only.here" in error and "404" in error, error  # missing on SRC: the link says

    plugmq_ok("route", "add", a.url, b.url, "amq.topic", "dup")
    error = plugmq_error("route", "add", a.url, b.url, "amq.topic", "dup")
    assert "already exists" in error, error

    error = plugmq_error("route", "del", a.url, b.url, "amq.topic", "never-added")
    assert "no such route" in error, error
    assert manage(b, "route.list")["broker_id"] == "b"  # both still serve


def test_broker_id_collision_is_reported(start_brokers: StartBrokers) -> None:
    first = start_brokers(["twin"], "--store", "memory")["twin"]
    second = start_brokers(["twin"], "--store", "memory")  # same name: same --broker-id
    other = second["twin"]
    assert other.port != first.port
    error = plugmq_error("route", "add", first.url, other.url, "amq.topic", "k")
    assert "broker id collision" in error, error
