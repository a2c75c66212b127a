"""pika's BlockingConnection survives master kills with a list of ConnectionParameters.

The application code below is pika's documented recipe (docs/examples
"blocking_consume_recover_multiple_hosts"): a ``BlockingConnection`` given every broker's
``ConnectionParameters`` tries them in turn (a standby refuses the handshake with 320 and pika
moves on), and a loop catches ``AMQPConnectionError`` and connects again. Nothing in it knows
about plugmq. The publisher republishes the message whose confirm it did not get; the ledger
checks that everything confirmed was delivered and nothing settled as acked came back.
"""

from __future__ import annotations

import threading

import pika
from support.failover_clients import kill_points, run_through_kills
from support.failover_group import FailoverGroup
from support.ledger import Ledger

QUEUE = "pika-failover"
TOTAL = 300


def parameters(group: FailoverGroup) -> list[pika.ConnectionParameters]:
    """One ConnectionParameters per group member; a short retry so a takeover is caught."""
    return [
        pika.ConnectionParameters(
            "127.0.0.1", member.port, connection_attempts=3, retry_delay=0.2, socket_timeout=5
        )
        for member in group.members
    ]


def publisher(params: list[pika.ConnectionParameters], ledger: Ledger) -> None:
    """Publish m0..m{TOTAL-1} persistently, each confirmed before the next."""
    number = 0
    while number < TOTAL:
        try:
            connection = pika.BlockingConnection(params)
            channel = connection.channel()
            channel.queue_declare(QUEUE, durable=True)
            channel.confirm_delivery()
            while number < TOTAL:
                message_id = f"m{number}"
                ledger.publish(message_id)
                properties = pika.BasicProperties(delivery_mode=2, message_id=message_id)
                channel.basic_publish("", QUEUE, message_id.encode(), properties)
                ledger.confirm(message_id)  # basic_publish returned: the broker confirmed it
                number += 1
            connection.close()
        except pika.exceptions.AMQPConnectionError:
            continue  # the same message again, on whichever broker serves now


def consumer(params: list[pika.ConnectionParameters], ledger: Ledger, stop: threading.Event):
    """Consume and ack until ``stop``; reconnect through the list after a failure."""
    while not stop.is_set():
        try:
            connection = pika.BlockingConnection(params)
            channel = connection.channel()
            channel.queue_declare(QUEUE, durable=True)
            channel.basic_qos(prefetch_count=20)
            for method, properties, _ in channel.consume(QUEUE, inactivity_timeout=0.2):
                if stop.is_set():
                    break
                if method is None:
                    continue
                ledger.deliver(properties.message_id)
                channel.basic_ack(method.delivery_tag)
                ledger.ack(properties.message_id)
            connection.close()
        except pika.exceptions.AMQPConnectionError:
            continue


def test_pika_blocking_survives_two_master_kills(toy_group: FailoverGroup) -> None:
    ledger = toy_group.ledger
    assert ledger is not None
    params = parameters(toy_group)
    report = run_through_kills(
        toy_group,
        lambda stop: publisher(params, ledger),
        lambda stop: consumer(params, ledger, stop),
        total=TOTAL,
        kill_at=kill_points(TOTAL, 2),
    )
    assert report.confirmed == TOTAL
    assert toy_group.takeovers == 2
    assert toy_group.masters_alive() == [toy_group.master]


def test_pika_goes_round_the_group_as_killed_masters_rejoin(toy_group: FailoverGroup) -> None:
    ledger = toy_group.ledger
    assert ledger is not None
    params = parameters(toy_group)
    first_master = toy_group.master
    report = run_through_kills(
        toy_group,
        lambda stop: publisher(params, ledger),
        lambda stop: consumer(params, ledger, stop),
        total=TOTAL,
        kill_at=kill_points(TOTAL, 4),
        rejoin=True,
    )
    assert report.confirmed == TOTAL
    assert toy_group.takeovers == 4
    # 0 -> 1 -> 2 -> 0 -> 1: the first master, killed and restarted, served again.
    assert toy_group.master is toy_group.members[1] and first_master is toy_group.members[0]
    actives = [e for e in toy_group.members[0].events() if e["event"] == "broker_active"]
    assert len(actives) == 2
    assert toy_group.masters_alive() == [toy_group.master]
