"""Throughput and latency, RDMA vs TCP, in the same lab VM (a measurement, not a timed test).

Prints ``RDMA-BENCH`` lines and writes dist/rdma-lab/bench.json for BENCHMARKS.md. Under TCG
(no KVM) both transports are emulated in software: compare them, do not quote absolutes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest
import trio
from rdma_lab import RdmaBroker, needs_rdma, rdma_stream_pair

from plugmq.client import connect
from plugmq_transport_rdma.dialer import RdmaDialer
from plugmq_transport_rdma.listener import RdmaListener
from plugmq_transport_rdma.settings import RingSettings

pytestmark = [needs_rdma, pytest.mark.timeout(600)]
RESULTS: dict[str, dict[str, float]] = {}
STREAM_BYTES = 8 * 1024 * 1024
ROUND_TRIPS = 200
MESSAGES = 3000


async def stream_numbers(a: trio.abc.Stream, b: trio.abc.Stream) -> dict[str, float]:
    """MB/s one way (64 KiB writes) and the median 64-byte round trip in microseconds."""
    chunk = b"t" * 65536

    async def sink() -> None:
        got = 0
        while got < STREAM_BYTES:
            got += len(await b.receive_some(65536))

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink)
        for _ in range(STREAM_BYTES // len(chunk)):
            await a.send_all(chunk)
    seconds = time.perf_counter() - started
    rtts = []
    for _ in range(ROUND_TRIPS):
        begin = time.perf_counter()
        await a.send_all(b"p" * 64)
        await receive_exactly(b, 64)
        await b.send_all(b"q" * 64)
        await receive_exactly(a, 64)
        rtts.append(time.perf_counter() - begin)
    return {
        "MB_per_s": STREAM_BYTES / seconds / 1e6,
        "rtt_us_median": statistics.median(rtts) * 1e6,
    }


async def receive_exactly(stream: trio.abc.Stream, count: int) -> None:
    """Read and drop exactly ``count`` bytes."""
    got = 0
    while got < count:
        got += len(await stream.receive_some(count - got))


async def test_stream_throughput_and_latency(rdma_ip: str) -> None:
    listener = RdmaListener.bind(rdma_ip, 0, RingSettings(), 16)
    client, server = await rdma_stream_pair(listener, rdma_ip)
    RESULTS["stream_rdma"] = await stream_numbers(client, server)
    await client.aclose()
    await server.aclose()
    await listener.aclose()
    tcp_listeners = await trio.open_tcp_listeners(0, host=rdma_ip)
    port = tcp_listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.abc.Stream] = []

        async def accept() -> None:
            accepted.append(await tcp_listeners[0].accept())

        nursery.start_soon(accept)
        tcp_client = await trio.open_tcp_stream(rdma_ip, port)
    RESULTS["stream_tcp"] = await stream_numbers(tcp_client, accepted[0])
    await tcp_client.aclose()
    await accepted[0].aclose()
    report()


async def broker_numbers(url: str) -> dict[str, float]:
    """Publish+confirm and consume rates of 1 KiB messages, and the confirm round trip."""
    dialers = {"amqp+rdma": RdmaDialer()}
    async with connect(url, dialers=dialers) as connection, connection.channel() as channel:
        queue = f"bench-{url.split(':', 1)[0]}"
        await channel.queue_declare(queue)
        await channel.confirm_select()
        started = time.perf_counter()
        for _ in range(MESSAGES):
            await channel.publish("", queue, b"m" * 1024)
        await channel.wait_for_confirms()
        published = time.perf_counter()
        seen = 0
        async with channel.consume(queue, prefetch=1000, no_ack=True) as consumer:
            async for _message in consumer:
                seen += 1
                if seen == MESSAGES:
                    break
        consumed = time.perf_counter()
        rtts = []
        for _ in range(ROUND_TRIPS):
            begin = time.perf_counter()
            await channel.publish_confirmed("", queue, b"l" * 64)
            rtts.append(time.perf_counter() - begin)
    return {
        "publish_confirmed_msgs_per_s": MESSAGES / (published - started),
        "consume_msgs_per_s": MESSAGES / (consumed - published),
        "confirm_rtt_us_median": statistics.median(rtts) * 1e6,
    }


async def test_broker_throughput_and_latency(rdma_broker: RdmaBroker) -> None:
    RESULTS["broker_tcp"] = await broker_numbers(rdma_broker.tcp)
    RESULTS["broker_rdma"] = await broker_numbers(rdma_broker.rdma)
    report()


def report() -> None:
    """Print and save what was measured so far."""
    for name, numbers in RESULTS.items():
        shown = ", ".join(f"{key}={value:.1f}" for key, value in numbers.items())
        print(f"RDMA-BENCH {name}: {shown}")
    out = Path(os.environ.get("PLUGMQ_RDMA_BENCH_OUT", "dist/rdma-lab/bench.json"))
    if out.parent.is_dir():
        out.write_text(json.dumps(RESULTS, indent=2) + "\n")
