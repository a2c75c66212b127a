"""The HA contract with a toy strategy (tests/ha/plugins/toy_ha.py) in a real broker process.

Signals stand in for a lock or an election: SIGUSR1 promotes, SIGUSR2 fences. The broker runs
the Berkeley DB store on disk and real pika clients connect over loopback. What is checked:
a standby does not open the store and refuses clients with a redirect naming the master
(the connection hook, seen by pika); promotion recovers what an earlier mastership confirmed;
fencing closes clients at once and stops the master's services; a second promotion starts
everything once; server properties from a plugin reach clients.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from support.admin_cli import cli_json, cli_ok, table_rows
from support.broker_process import BrokerProcess, broker_process
from support.polling import wait_for

TOY_HA = str(Path(__file__).parent / "plugins" / "toy_ha.py")
MASTER_URL = "amqp://master.example:5672/"
#: Persistent messages the broker recovers on promotion: recovery takes long enough to race.
BACKLOG = 50_000


@pytest.fixture
def toy_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A BDB broker under the toy strategy, started as a listening standby."""
    process = broker_process(
        tmp_path, "--load-module", TOY_HA, "--ha", "toy", "--toy-master-url", MASTER_URL
    )
    process.start(ready_event="broker_listening")
    yield process
    process.stop()


def _connect(port: int) -> pika.BlockingConnection:
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", port, connection_attempts=1)
    )


def _promote(broker: BrokerProcess) -> int:
    broker.process.send_signal(signal.SIGUSR1)
    return broker.wait_listening()


def _count(events: list[dict], name: str) -> int:
    return sum(1 for event in events if event.get("event") == name)


def test_standby_refuses_with_redirect_and_leaves_store_closed(toy_broker: BrokerProcess) -> None:
    with pytest.raises(pika.exceptions.AMQPConnectionError) as raised:
        _connect(toy_broker.port)
    assert MASTER_URL in repr(raised.value)
    assert "standby" in repr(raised.value)
    events = toy_broker.events()
    assert _count(events, "store_opening") == 0
    assert not any(toy_broker.data_dir.glob("**/*.db")), "a standby touched the store"
    refused = [e for e in events if e.get("event") == "connection_refused"]
    assert refused and refused[-1]["code"] == 320


def test_promotion_recovers_and_fencing_stops_everything(toy_broker: BrokerProcess) -> None:
    port = _promote(toy_broker)
    connection = _connect(port)
    assert connection._impl.server_properties["cluster_urls"] == [MASTER_URL.encode()] or (
        connection._impl.server_properties["cluster_urls"] == [MASTER_URL]
    )
    assert connection._impl.server_properties["capabilities"]["toy_ha"] is True
    channel = connection.channel()
    channel.queue_declare("ha-q", durable=True)
    channel.confirm_delivery()
    for number in range(50):
        channel.basic_publish(
            "", "ha-q", f"m{number}".encode(), pika.BasicProperties(delivery_mode=2)
        )

    toy_broker.process.send_signal(signal.SIGUSR2)
    toy_broker.wait_event("broker_fenced")
    toy_broker.wait_event("toy_role_changed", old="master", new="fenced")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        connection.process_data_events(time_limit=5)
        channel.basic_publish("", "ha-q", b"after fence", pika.BasicProperties(delivery_mode=2))
    assert closed.value.reply_code == 320
    with pytest.raises(pika.exceptions.AMQPConnectionError) as raised:
        _connect(toy_broker.port)
    assert "fenced" in repr(raised.value) and MASTER_URL in repr(raised.value)

    port = _promote(toy_broker)
    connection = _connect(port)
    channel = connection.channel()
    declared = channel.queue_declare("ha-q", durable=True, passive=True)
    assert declared.method.message_count == 50
    bodies = []
    for _ in range(50):
        _, _, body = channel.basic_get("ha-q", auto_ack=True)
        bodies.append(body)
    assert bodies == [f"m{number}".encode() for number in range(50)]
    connection.close()

    events = toy_broker.events()
    # The standby's own service ran until the first promotion ended the standby role.
    assert _count(events, "toy_standby_service_started") == 1
    assert _count(events, "toy_standby_service_stopped") == 1
    assert _count(events, "toy_service_started") == 2
    assert _count(events, "toy_service_stopped") == 1
    actives = [e for e in events if e.get("event") == "broker_active"]
    assert [e["epoch"] for e in actives] == [1, 2]
    changes = [
        (e["old"], e["new"], e["active"]) for e in events if e["event"] == "toy_role_changed"
    ]
    assert changes == [
        ("standby", "master", True),
        ("master", "fenced", False),
        ("fenced", "master", True),
    ]


def test_stat_ha_shows_role_epoch_and_the_strategys_details(toy_broker: BrokerProcess) -> None:
    port = _promote(toy_broker)
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    [row] = cli_json(url, "stat", "ha")
    assert row["role"] == "master" and row["epoch"] == 1 and row["mode"] == "toy"
    assert row["details"] == {"master_url": MASTER_URL}
    assert row["listening"] == [f"tcp://127.0.0.1:{port}"]
    human = table_rows(cli_ok(url, "stat", "ha"))
    assert human[0]["role"] == "master" and human[0]["details"] == f"master_url={MASTER_URL}"


def _connect_results(port: int, stop: threading.Event, results: list[str]) -> None:
    """Connect again and again until ``stop``; record each outcome (reply code or "ok")."""
    while not stop.is_set():
        try:
            _connect(port).close()
            results.append("ok")
        except pika.exceptions.AMQPConnectionError as error:
            # pika reports any close during start-ok as a "probable authentication error".
            text = repr(error)
            results.append(
                next((code for code in ("320", "403", "530") if f"({code})" in text), text)
            )


def test_clients_are_refused_until_recovery_ends(tmp_path: Path) -> None:
    """A listening standby is master before its recovery ends; the broker itself must keep
    refusing (320) until it serves, or a client meets users and vhosts not yet recovered."""
    broker = broker_process(tmp_path, "--load-module", TOY_HA, "--ha", "toy", "--no-toy-redirect")
    broker.start(ready_event="broker_listening")
    try:
        port = _promote(broker)
        connection = _connect(port)
        channel = connection.channel()
        channel.queue_declare("backlog", durable=True)
        properties = pika.BasicProperties(delivery_mode=2)
        for _ in range(BACKLOG // 1000):
            for _ in range(1000):
                channel.basic_publish("", "backlog", b"x" * 100, properties)
            connection.process_data_events(0)
        channel.queue_declare("backlog", durable=True, passive=True)  # a round trip: all in
        connection.close()
        broker.process.send_signal(signal.SIGUSR2)
        broker.wait_event("broker_fenced")

        stop, results = threading.Event(), []
        hammer = threading.Thread(target=_connect_results, args=(port, stop, results))
        hammer.start()
        try:
            wait_for(lambda: results, 10)  # the fenced broker refuses: the hammer is going
            _promote(broker)
        finally:
            stop.set()
            hammer.join(30)
        promoted = results.index("ok") if "ok" in results else len(results)
        assert promoted > 1, results[:5]  # refused through the fence and the recovery
        assert set(results) <= {"320", "ok"}, [r for r in results if r not in ("320", "ok")]
    finally:
        broker.stop()
