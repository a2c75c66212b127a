"""A broker with the RDMA listener and plugmq.client over ``amqp+rdma://`` (lab VM only)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import trio
from rdma_lab import RdmaBroker, needs_rdma

from plugmq.client import connect
from plugmq_transport_rdma.dialer import RdmaDialer

pytestmark = [needs_rdma, pytest.mark.timeout(600)]
DIALERS = {"amqp+rdma": RdmaDialer()}
MESSAGES = 10_000
BIG = 40_000  # bytes: spans three 16 KiB RDMA buffers


def body(index: int) -> bytes:
    """Every 50th message is bigger than one RDMA buffer."""
    head = index.to_bytes(4, "big")
    return head + (b"B" * BIG if index % 50 == 0 else b"s" * 96)


async def test_raw_amqp_handshake_over_rdma(rdma_broker: RdmaBroker) -> None:
    host, port = rdma_broker.rdma.split("@", 1)[1].rstrip("/").rsplit(":", 1)
    stream = await RdmaDialer().dial(host, int(port))
    await stream.send_all(b"AMQP\x00\x00\x09\x01")
    reply = await stream.receive_some(4096)
    assert reply[:1] == b"\x01" and b"PLAIN" in reply  # connection.start
    await stream.aclose()


async def test_10k_messages_with_multi_buffer_ones(rdma_broker: RdmaBroker) -> None:
    started = time.monotonic()
    async with (
        connect(rdma_broker.rdma, dialers=DIALERS) as connection,
        connection.channel() as channel,
    ):
        await channel.queue_declare("rdma-10k")
        await channel.confirm_select()
        for index in range(MESSAGES):
            await channel.publish("", "rdma-10k", body(index))
        await channel.wait_for_confirms()
        published = time.monotonic()
        seen = 0
        async with channel.consume("rdma-10k", prefetch=500) as consumer:
            async for message in consumer:
                assert message.body == body(seen)
                seen += 1
                if seen % 100 == 0 or seen == MESSAGES:
                    await message.ack(multiple=True)
                if seen == MESSAGES:
                    break
    total = time.monotonic() - started
    print(
        f"RDMA-10K: {MESSAGES} messages ({MESSAGES // 50} of {BIG} bytes) published+confirmed "
        f"in {published - started:.1f} s, consumed in {total - (published - started):.1f} s"
    )
    assert seen == MESSAGES


PUBLISHER = """
import sys, trio
from plugmq.client import connect
from plugmq_transport_rdma import device
from plugmq_transport_rdma.dialer import RdmaDialer

async def main():
    async with connect(sys.argv[1], dialers={"amqp+rdma": RdmaDialer()}) as connection:
        async with connection.channel() as channel:
            await channel.queue_declare("doomed")
            sent = 0
            while True:
                await channel.publish("", "doomed", b"x" * 20000)
                sent += 1
                if sent == 200:
                    print("ready", flush=True)
                if sent % 50 == 0:
                    await trio.sleep(0)

trio.run(main)
"""


async def test_killed_client_is_logged_and_broker_keeps_serving(rdma_broker: RdmaBroker) -> None:
    client = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, rdma_broker.rdma],
        stdout=subprocess.PIPE,
        env=os.environ,
    )
    try:
        assert client.stdout is not None
        output = client.stdout
        line = b""
        while line.strip() != b"ready":  # the client also logs to stdout
            line = await trio.to_thread.run_sync(output.readline)
            assert line, "the publisher exited before it was ready"
        client.send_signal(signal.SIGKILL)
        client.wait()
        killed = time.monotonic()
        lost = await wait_for_event(rdma_broker, {"connection_lost", "rdma_stream_broken"}, 90)
        print(
            f"RDMA-PEER-LOSS: broker logged {lost['event']} ({lost.get('reason', '')}) "
            f"{time.monotonic() - killed:.1f} s after kill -9"
        )
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert rdma_broker.alive()
    async with (
        connect(rdma_broker.rdma, dialers=DIALERS) as connection,
        connection.channel() as channel,
    ):
        await channel.queue_declare("after-loss")
        await channel.confirm_select()
        await channel.publish_confirmed("", "after-loss", b"still serving")
        message = await channel.get("after-loss", no_ack=True)
        assert message is not None and message.body == b"still serving"


async def wait_for_event(broker: RdmaBroker, names: set[str], timeout: float) -> dict:
    """The first log event named in ``names`` (polls the log; the broker is another process)."""
    with trio.fail_after(timeout):
        while True:
            for event in broker.events():
                if event.get("event") in names:
                    return event
            await trio.sleep(0.2)
