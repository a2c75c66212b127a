"""Server-driven failover of plugmq.client against a real toy-HA group (docs/failover.md).

Three broker processes under tests/ha/plugins/toy_ha.py share one data directory; only the
master opens it. Standbys refuse clients with a close naming the master, the master lists the
group in its ``cluster_urls`` server property. Checked: a client given only a standby reaches
the master in one round and learns the group; a redirect naming a broker already tried does not
loop; a master that fences itself naming its successor sends its clients there first; a
client given only the first member's URL survives two kill -9 takeovers under a confirmed
publisher and an acking consumer, with the invariant ledger checked at the end.
"""

from __future__ import annotations

import signal
from pathlib import Path

import trio
from structlog.testing import capture_logs
from support.admin_cli import cli_ok
from support.failover_clients import SEED, kill_points
from support.failover_group import FailoverGroup, ToyHAMode
from support.ledger import Ledger

from plugmq.client import ClientConnection, ConnectionClosed, ConnectionFailed, connect

TIMEOUT = 60
QUEUE = "failover-jobs"
PERSISTENT = {"delivery_mode": 2}


async def test_standby_redirects_at_once_and_master_advertises_group(
    toy_group: FailoverGroup,
) -> None:
    standby = toy_group.members[1]
    master = toy_group.master
    assert master is not None
    with trio.fail_after(TIMEOUT):
        # One URL and a reconnect delay far beyond the deadline: only the redirect gets there.
        async with connect(standby.url, reconnect=True, reconnect_delay=600) as conn:
            assert conn.url.port == master.port
            # the URL given, the master it redirected to, then the member learned from it
            learned = toy_group.members[2]
            assert [url.port for url in conn.urls] == [standby.port, master.port, learned.port]
            assert {(url.username, url.password, url.vhost) for url in conn.urls} == {
                ("guest", "guest", "/")
            }
    refused = standby.wait_event("connection_refused", consume=False)
    assert refused["code"] == 320


async def test_redirect_to_a_broker_already_tried_does_not_loop(
    toy_group: FailoverGroup,
) -> None:
    standby = toy_group.members[2]
    toy_group.mode._write(master=f"amqp://127.0.0.1:{standby.port}/", members=[])  # names itself
    with trio.fail_after(TIMEOUT):
        try:
            async with connect(standby.url):
                raise AssertionError("a standby accepted the connection")
        except ConnectionFailed as failed:
            assert len(failed.errors) == 1
            assert "the master is amqp://127.0.0.1" in str(failed.errors[0][1])


async def _publisher(conn: ClientConnection, ledger: Ledger, count: int) -> None:
    """Publish ``count`` persistent messages, each until confirmed (republish on failover)."""
    number = 0
    while number < count:
        try:
            async with conn.channel() as channel:
                await channel.queue_declare(QUEUE, durable=True)
                await channel.confirm_select()
                while number < count:
                    message_id = f"m{number}"
                    ledger.publish(message_id)
                    properties = {**PERSISTENT, "message_id": message_id}
                    await channel.publish_confirmed("", QUEUE, message_id.encode(), properties)
                    ledger.confirm(message_id)
                    number += 1
        except ConnectionClosed:
            await conn.wait_connected()


async def _consumer(conn: ClientConnection, ledger: Ledger) -> None:
    """Consume and ack forever, resuming after every failover."""
    while True:
        try:
            async with conn.channel() as channel:
                await channel.queue_declare(QUEUE, durable=True)
                async with channel.consume(QUEUE, prefetch=20) as consumer:
                    async for message in consumer:
                        message_id = message.properties.message_id
                        ledger.deliver(message_id)
                        await message.ack()
                        ledger.ack(message_id)
        except ConnectionClosed:
            await conn.wait_connected()


async def _wait_confirmed(ledger: Ledger, count: int) -> None:
    while ledger.confirmed_count < count:
        await trio.sleep(0.02)


async def test_client_given_one_url_survives_two_master_kills(toy_group: FailoverGroup) -> None:
    ledger = toy_group.ledger
    assert ledger is not None
    options = {"reconnect": True, "reconnect_delay": 0.1, "reconnect_max_delay": 0.5}
    first = toy_group.members[0].url
    with trio.fail_after(TIMEOUT * 2):
        async with (
            connect(first, **options) as publishing,
            connect(first, **options) as consuming,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_consumer, consuming, ledger)
            publisher_done = trio.Event()

            async def publish() -> None:
                await _publisher(publishing, ledger, 300)
                publisher_done.set()

            nursery.start_soon(publish)
            for threshold in kill_points(300, 2):
                await _wait_confirmed(ledger, threshold)
                await trio.to_thread.run_sync(toy_group.kill_master)
            await publisher_done.wait()
            while not ledger.delivered_all_confirmed():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
            assert publishing.url.port == toy_group.master.port
    report = ledger.check()
    assert report.confirmed == 300, f"seed {SEED}"
    assert toy_group.takeovers == 2
    assert toy_group.masters_alive() == [toy_group.master]


async def test_a_fencing_master_naming_its_successor_sends_clients_there_first(
    tmp_path: Path,
) -> None:
    # The memory store, so that the successor can serve before the old master fences (a toy
    # hand-over: with a shared store the lock would forbid two masters at once).
    mode = ToyHAMode(tmp_path, store_args=("--store", "memory"))
    group = FailoverGroup(tmp_path, mode, size=3)
    old, skipped, successor = group.members
    group.start()
    try:
        with trio.fail_after(TIMEOUT):
            async with connect(old.url, reconnect=True, reconnect_delay=600) as conn:
                await trio.to_thread.run_sync(mode.elect, group, [successor])
                with capture_logs() as logs:
                    assert old.process is not None
                    old.process.send_signal(signal.SIGUSR2)
                    await conn.wait_disconnected()
                    await conn.wait_connected()
                assert conn.url.port == successor.port
        # Straight to the successor: no attempt on the member after the old master in the list.
        assert [e for e in logs if e["event"] == "connect attempt failed"] == []
        assert not any(f":{skipped.port}/" in str(e.get("url")) for e in logs)
    finally:
        group.stop()


async def test_learned_urls_keep_the_users_credentials_and_vhost(toy_group: FailoverGroup) -> None:
    master = toy_group.master
    assert master is not None
    await trio.to_thread.run_sync(_add_user_and_vhost, master.url)
    standby = toy_group.members[1]
    url = f"amqp://app:s3cret@127.0.0.1:{standby.port}/orders"
    with trio.fail_after(TIMEOUT):
        async with connect(url, reconnect=True, reconnect_delay=0.1) as conn:
            assert conn.url.port == master.port
            assert {(u.username, u.password, u.vhost) for u in conn.urls} == {
                ("app", "s3cret", "orders")
            }
            await trio.to_thread.run_sync(toy_group.kill_master)
            await conn.wait_disconnected()
            await conn.wait_connected()
            # The user and vhost came back with the shared store; the learned URL carried them.
            assert conn.url.port == toy_group.master.port
            async with conn.channel() as channel:
                declared = await channel.queue_declare("app-q", durable=True)
                assert declared.message_count == 0


def _add_user_and_vhost(admin_url: str) -> None:
    cli_ok(admin_url, "vhost", "add", "orders")
    cli_ok(admin_url, "user", "add", "app", "s3cret")
    cli_ok(admin_url, "permissions", "set", "app", ".*", ".*", ".*", "--vhost", "orders")
