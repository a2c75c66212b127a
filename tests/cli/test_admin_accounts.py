"""``plugmq user|vhost|permissions``: RabbitMQ's access model, enforced and persisted.

Users and permissions are set with the CLI (subprocesses) and checked with pika; with the
Berkeley DB store they must survive a restart and kill -9.
"""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker
from support.admin_cli import cli_error, cli_json, cli_ok, table_rows
from support.broker_process import BrokerProcess


def _login(broker: BrokerProcess, user: str, password: str, vhost: str = "/"):
    credentials = pika.PlainCredentials(user, password)
    return pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", broker.port, vhost, credentials)
    )


def _url(broker: BrokerProcess, user: str, password: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{broker.port}/"


def _login_refused(broker: BrokerProcess, user: str, password: str, vhost: str = "/") -> str:
    """pika's error text for a refused connection (530 vhost, 403 login)."""
    with pytest.raises(pika.exceptions.AMQPConnectionError) as raised:
        _login(broker, user, password, vhost)
    return str(raised.value)


def _refused(call, code: int) -> str:
    with pytest.raises((ChannelClosedByBroker, ConnectionClosedByBroker)) as raised:
        call()
    assert raised.value.reply_code == code
    return raised.value.reply_text


def test_users_vhosts_and_permissions_persist_across_kill_9(durable_broker: BrokerProcess) -> None:
    url = durable_broker.url
    cli_ok(url, "vhost", "add", "/shop")
    cli_ok(url, "user", "add", "alice", "wonder", "--tag", "monitoring")
    cli_ok(
        url,
        "permissions",
        "set",
        "alice",
        "^alice\\.",
        "^(amq\\.default|alice\\..*)$",
        "^alice\\.",
        "--vhost",
        "/shop",
    )
    cli_ok(url, "user", "add", "gone", "pw")
    cli_ok(url, "user", "delete", "gone")
    durable_broker.kill()
    durable_broker.restart()
    url = durable_broker.url  # a new port
    users = {u["name"]: u["tags"] for u in cli_json(url, "user", "list")}
    assert users == {"guest": ["administrator"], "alice": ["monitoring"]}
    assert {v["name"] for v in cli_json(url, "vhost", "list")} == {"/", "/shop"}
    [permission] = cli_json(url, "permissions", "list", "--user", "alice")
    assert permission["vhost"] == "/shop" and permission["configure"] == "^alice\\."
    with _login(durable_broker, "alice", "wonder", "/shop") as connection:
        channel = connection.channel()
        channel.queue_declare("alice.inbox")
        channel.basic_publish("", "alice.inbox", b"hi")
        assert channel.basic_get("alice.inbox", auto_ack=True)[2] == b"hi"
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'alice'\"" in (
        _login_refused(durable_broker, "alice", "wonder", "/")
    )
    assert "ACCESS_REFUSED" in _login_refused(durable_broker, "gone", "pw")


def test_permissions_are_enforced_with_rabbitmqs_codes(broker: BrokerProcess) -> None:
    url = broker.url
    cli_ok(url, "config", "add", "queue", "secret")
    cli_ok(url, "config", "add", "exchange", "direct", "locked")
    cli_ok(url, "user", "add", "bob", "builder")
    cli_ok(url, "permissions", "set", "bob", "^bob\\.", "^(amq\\.default|bob\\..*)$", "^bob\\.")
    with _login(broker, "bob", "builder") as connection:
        channel = connection.channel()
        channel.queue_declare("bob.q")
        channel.basic_publish("", "bob.q", b"mine")
        assert channel.basic_get("bob.q", auto_ack=True)[2] == b"mine"
        text = _refused(lambda: channel.queue_declare("other"), 403)
        assert text == (
            "ACCESS_REFUSED - access to queue 'other' in vhost '/' refused for user 'bob'"
        )
        channel = connection.channel()
        _refused(lambda: channel.basic_get("secret"), 403)
        channel = connection.channel()
        _refused(lambda: channel.basic_consume("secret", lambda *a: None), 403)
        channel = connection.channel()
        channel.confirm_delivery()
        text = _refused(lambda: channel.basic_publish("locked", "k", b"x"), 403)
        assert "access to exchange 'locked' in vhost '/' refused for user 'bob'" in text
        channel = connection.channel()
        _refused(lambda: channel.queue_bind("bob.q", "amq.direct", "k"), 403)  # read on exchange
    events = [e for e in broker.events() if e.get("event") == "access_refused"]
    assert {e["name"] for e in events} >= {"other", "secret", "locked", "amq.direct"}


def test_permission_changes_apply_to_open_connections(broker: BrokerProcess) -> None:
    cli_ok(broker.url, "user", "add", "carol", "pw")
    cli_ok(broker.url, "permissions", "set", "carol", ".*", ".*", ".*")
    with _login(broker, "carol", "pw") as connection:
        channel = connection.channel()
        channel.queue_declare("carol.q")
        cli_ok(broker.url, "permissions", "clear", "carol")
        _refused(lambda: channel.queue_declare("carol.q2"), 403)
    assert "530" in _login_refused(broker, "carol", "pw")


def test_user_id_spoofing_is_refused_with_406(broker: BrokerProcess) -> None:
    with _login(broker, "guest", "guest") as connection:
        channel = connection.channel()
        channel.queue_declare("uid")
        channel.basic_publish("", "uid", b"ok", pika.BasicProperties(user_id="guest"))
        assert channel.basic_get("uid", auto_ack=True)[2] == b"ok"
        channel.confirm_delivery()
        text = _refused(
            lambda: channel.basic_publish("", "uid", b"x", pika.BasicProperties(user_id="root")),
            406,
        )
    assert text == (
        "PRECONDITION_FAILED - user_id property set to 'root' but authenticated user was 'guest'"
    )


def test_non_administrators_are_refused_by_management(broker: BrokerProcess) -> None:
    url = broker.url
    cli_ok(url, "user", "add", "mon", "pw", "--tag", "monitoring")
    cli_ok(url, "user", "add", "plain", "pw")
    for name in ("mon", "plain"):
        cli_ok(url, "permissions", "set", name, ".*", ".*", ".*")
    assert any(
        r["queue"] == "plugmq.management"
        for r in table_rows(cli_ok(_url(broker, "mon", "pw"), "stat", "queues"))
    )
    error = cli_error(_url(broker, "mon", "pw"), "config", "add", "queue", "nope")
    assert "user 'mon' may not run 'queue.add': it needs the administrator tag" in error
    error = cli_error(_url(broker, "plain", "pw"), "stat", "queues")
    assert "needs the administrator or monitoring tag" in error
    refusals = [e for e in broker.events() if e.get("event") == "management_refused"]
    assert {(e["user"], e["command"]) for e in refusals} >= {
        ("mon", "queue.add"),
        ("plain", "queue.list"),
    }
    cli_ok(url, "user", "tags", "plain", "administrator")
    cli_ok(_url(broker, "plain", "pw"), "config", "add", "queue", "by.plain")


def test_account_errors(shared_broker: BrokerProcess) -> None:
    url = shared_broker.url
    assert "no user 'nobody'" in cli_error(url, "user", "delete", "nobody")
    assert "user 'guest' already exists" in cli_error(url, "user", "add", "guest", "x")
    assert "no vhost '/nowhere'" in cli_error(url, "vhost", "delete", "/nowhere")
    assert "cannot be deleted" in cli_error(url, "vhost", "delete", "/")
    assert "invalid regular expression" in cli_error(
        url, "permissions", "set", "guest", "(", ".*", ".*"
    )


def test_deleting_a_vhost_closes_its_connections(broker: BrokerProcess) -> None:
    cli_ok(broker.url, "vhost", "add", "/tmp")
    cli_ok(broker.url, "permissions", "set", "guest", ".*", ".*", ".*", "--vhost", "/tmp")
    connection = _login(broker, "guest", "guest", "/tmp")
    connection.channel().queue_declare("in.tmp", durable=True)
    cli_ok(broker.url, "vhost", "delete", "/tmp")
    with pytest.raises(ConnectionClosedByBroker) as closed:
        connection.process_data_events(2)
        connection.channel()
    assert closed.value.reply_code == 320
    assert "/tmp" not in {v["name"] for v in cli_json(broker.url, "vhost", "list")}
    assert not cli_json(broker.url, "permissions", "list", "--vhost", "/tmp")


def test_admin_requests_need_no_reply_queue_and_no_configure_permission(
    broker: BrokerProcess,
) -> None:
    # Responses come back by direct reply-to: the CLI declares nothing, so an administrator
    # allowed only to publish to the default exchange can run every request.
    url = broker.url
    cli_ok(url, "user", "add", "ops", "pw", "--tag", "administrator")
    cli_ok(url, "permissions", "set", "ops", "", "^amq\\.default$", "")
    ops = _url(broker, "ops", "pw")
    cli_ok(ops, "config", "add", "queue", "by.ops", "--durable")
    queues = {row["name"] for row in cli_json(ops, "config", "list", "queues")}
    assert "by.ops" in queues
    assert not [name for name in queues if name.startswith("amq.gen-")]
    stats = table_rows(cli_ok(ops, "stat", "queues"))
    assert not [row for row in stats if row["queue"].startswith("amq.")]
    # Without write on the default exchange the request itself is refused.
    cli_ok(url, "permissions", "set", "ops", "", "", "")
    assert "ACCESS_REFUSED" in cli_error(ops, "config", "list", "queues")
