"""The scenarios of ``plugmq perf`` and the orchestration that runs one of them.

Every scenario works against any AMQP 0-9-1 broker: it only uses the standard exchanges
(``amq.direct``, ``amq.fanout``, ``amq.topic``) and queues it declares with unique names and
deletes afterwards.

==================  ==========================================================================
``throughput``      1 producer, 1 consumer connection; a queue bound to amq.direct; manual ack,
                    prefetch 100; at most ``max_inflight`` messages in flight
``throughput-noack`` the same with ``no_ack`` consumers
``durable``         persistent messages to a durable queue with publisher confirms (a window of
                    ``confirm_window`` unconfirmed publishes); one manual-ack consumer
``fanout``          amq.fanout to ``queues`` (10) queues, one consumer connection each
``topic``           ``bindings`` (1000) distinct wildcard bindings over ``queues`` queues on
                    amq.topic, ``keys`` (1000) routing keys published round robin; every
                    delivery count is checked against :mod:`plugmq.perf.topic_reference`
``latency``         manual-ack consumer, producer paced at ``rate`` msg/s; p50/p99/p99.9
``connections``     open ``connections`` (1000) idle connections with a channel each: open
                    time, broker RSS per connection
``backlog``         publish ``count`` persistent messages to a durable queue with no consumer
                    (fills a backlog for recovery and memory measurements; ``keep`` keeps it)
``ceiling``         the tool against :mod:`plugmq.perf.sink` (a fake broker that only reads and
                    floods deliveries): the most the tool can publish and consume
==================  ==========================================================================

Orchestration: the parent declares the topology, starts consumer then producer worker
processes (:mod:`plugmq.perf.workers`), waits until every one is ready, lets them run for a
warm-up, then measures a window of ``duration`` seconds (counters, broker CPU and RSS,
the workers' own CPU), stops the producers, lets the consumers drain what is in flight
(bounded), stops them and checks the delivery counts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import secrets
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from plugmq.client import connect
from plugmq.perf import stats
from plugmq.perf.topic_reference import TopicPlan, make_plan
from plugmq.perf.workers import (
    RUN,
    STOP,
    STOP_CONSUMING,
    STOP_PRODUCING,
    WAIT,
    Board,
    WorkerSpec,
    start_worker,
)

SCENARIOS = (
    "throughput",
    "throughput-noack",
    "durable",
    "fanout",
    "topic",
    "latency",
    "connections",
    "backlog",
    "ceiling",
)

Progress = Callable[[str], None]

_READY_TIMEOUT = 60.0
_RESULT_TIMEOUT = 30.0


class PerfError(RuntimeError):
    """A scenario could not run (broker unreachable, worker failed ...)."""


@dataclass
class PerfConfig:
    """Everything a scenario run can be told (the CLI flags)."""

    scenario: str = "throughput"
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    size: int = 100
    duration: float = 10.0
    warmup: float = 1.0
    max_inflight: int = 10_000
    prefetch: int = 100
    confirm_window: int = 100
    queues: int = 10
    bindings: int = 1000
    keys: int = 1000
    rate: float = 1000.0
    connections: int = 1000
    connect_concurrency: int = 20
    count: int = 0
    queue: str | None = None
    keep: bool = False
    drain_timeout: float = 15.0
    broker_pid: int | None = None
    #: ``arguments`` of every queue the scenario declares, e.g. ``{"x-queue-type": "quorum"}``
    #: to measure RabbitMQ's quorum queues.
    queue_arguments: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Plan:
    """The topology and workers of one scenario run."""

    queues: list[str]
    durable: bool = False
    bindings: list[tuple[int, str, str]] = field(default_factory=list)
    """(queue index, exchange, routing key)."""
    producer: WorkerSpec | None = None
    consumers: list[WorkerSpec] = field(default_factory=list)
    topic: TopicPlan | None = None
    topic_matrix: list[list[bool]] | None = None
    headline: str = "delivered_per_s"


def run_scenario(config: PerfConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run ``config.scenario`` once and return its result (a JSON-able dict)."""
    if config.scenario not in SCENARIOS:
        raise PerfError(f"unknown scenario {config.scenario!r}; choose from {', '.join(SCENARIOS)}")
    say = progress or (lambda line: None)
    if config.scenario == "ceiling":
        return _run_ceiling(config, say)
    if config.scenario == "connections":
        return _run_connections(config, say)
    return _run_messaging(config, say)


def _run_ceiling(config: PerfConfig, say: Progress) -> dict[str, Any]:
    """The tool's own limits against the sink: publishing alone, then consuming alone."""
    sink, port = _start_sink(config.size)
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    try:
        phases = {}
        for phase in ("publish", "consume-ack"):
            phase_config = PerfConfig(
                **{**asdict(config), "url": url, "broker_pid": sink.pid, "extra": {"phase": phase}}
            )
            phases[phase] = _run_messaging(phase_config, say)
    finally:
        sink.terminate()
        sink.join(5)
    result = dict(phases["publish"])
    result["published_per_s"] = phases["publish"]["published_per_s"]
    result["delivered_per_s"] = phases["consume-ack"]["delivered_per_s"]
    result["delivered"] = phases["consume-ack"]["delivered"]
    result["total_delivered"] = phases["consume-ack"]["total_delivered"]
    result["tool_cpu"] = {
        "producer": phases["publish"]["tool_cpu"]["producer"],
        "consumer": phases["consume-ack"]["tool_cpu"]["consumer"],
    }
    result["phases"] = phases
    result["headline"] = _headline("published_per_s", result)
    result["ok"] = True
    return result


# ------------------------------------------------------------------------------------------------
# Plans
# ------------------------------------------------------------------------------------------------


def _plan(config: PerfConfig, run_id: str) -> _Plan:
    scenario = config.scenario
    prefix = f"perf-{scenario}-{run_id}"
    queue_count = config.queues if scenario in ("fanout", "topic") else 1
    names = [f"{prefix}-{index}" for index in range(queue_count)]
    if config.queue and queue_count == 1:
        names = [config.queue]
    board = Board(workers=2 if scenario != "backlog" else 1, producers=1, queues=queue_count)
    plan = _Plan(names, durable=scenario in ("durable", "backlog"))
    producer = WorkerSpec(
        role="producer",
        url=config.url,
        board=board,
        worker=0,
        size=config.size,
        max_inflight=config.max_inflight,
    )
    consumer = WorkerSpec(
        role="consumer",
        url=config.url,
        board=board,
        worker=1,
        queues=names,
        queue_slots=[board.consumed(q) for q in range(queue_count)],
        prefetch=config.prefetch,
    )
    if scenario in ("throughput", "throughput-noack", "durable", "latency", "ceiling", "backlog"):
        producer.exchange, producer.routing_keys = "amq.direct", [names[0]]
        plan.bindings = [(0, "amq.direct", names[0])]
    if scenario == "throughput-noack":
        consumer.no_ack = True
    elif scenario in ("durable", "backlog"):
        producer.persistent = True
        producer.confirm_window = config.confirm_window
        plan.headline = "confirmed_per_s"
    elif scenario == "latency":
        producer.rate = config.rate
        consumer.latency = True
        plan.headline = "latency_p50_ms"
    elif scenario == "fanout":
        producer.exchange = "amq.fanout"
        producer.deliveries_per_message = queue_count
        plan.bindings = [(q, "amq.fanout", "") for q in range(queue_count)]
    elif scenario == "topic":
        topic = plan.topic = make_plan(queue_count, config.bindings, config.keys)
        plan.topic_matrix = topic.expected_matrix()
        producer.exchange, producer.routing_keys = "amq.topic", list(topic.keys)
        per_key = [sum(row[k] for row in plan.topic_matrix) for k in range(len(topic.keys))]
        producer.deliveries_per_message = sum(per_key) / len(per_key)
        consumer.per_key = True
        plan.bindings = [
            (q, "amq.topic", pattern)
            for q, patterns in enumerate(topic.bindings)
            for pattern in patterns
        ]
    elif scenario == "ceiling":
        producer.max_inflight = 0  # the sink's consumer flood is unrelated to what we publish
        consumer.no_ack = config.extra.get("phase") == "consume-noack"
        plan.headline = "published_per_s"
    if scenario == "backlog":
        producer.count = config.count
        producer.max_inflight = 0
    elif scenario != "ceiling" or config.extra.get("phase") != "publish":
        plan.consumers = [consumer]
    if scenario != "ceiling" or config.extra.get("phase") == "publish":
        plan.producer = producer
    return plan


async def _setup(config: PerfConfig, plan: _Plan) -> dict[str, Any]:
    """Declare the plan's queues and bindings; return the broker's server properties."""
    async with connect(config.url, connection_name="perf-setup") as conn:
        server = conn.server_properties
        if config.scenario == "ceiling":
            return server
        async with conn.channel() as channel:
            for name in plan.queues:
                await channel.queue_declare(
                    name, durable=plan.durable, arguments=config.queue_arguments or None
                )
            for queue, exchange, key in plan.bindings:
                await channel.queue_bind(plan.queues[queue], exchange, key)
    return server


async def _teardown(config: PerfConfig, plan: _Plan) -> None:
    async with (
        connect(config.url, connection_name="perf-teardown") as conn,
        conn.channel() as channel,
    ):
        for name in plan.queues:
            await channel.queue_delete(name)


def _broker_info(server: dict[str, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return {
        "product": text(server.get("product", "?")),
        "version": text(server.get("version", "?")),
    }


# ------------------------------------------------------------------------------------------------
# Messaging scenarios
# ------------------------------------------------------------------------------------------------


class _Workers:
    """The worker processes of a run, their result pipes and the shared board."""

    def __init__(self, board: Board) -> None:
        self.board = board
        self.shared = multiprocessing.get_context("spawn").RawArray("q", board.size)
        self.started: list[tuple[WorkerSpec, Any, Any]] = []

    def start(self, spec: WorkerSpec) -> None:
        process, pipe = start_worker(spec, self.shared)
        self.started.append((spec, process, pipe))

    def control(self, value: int) -> None:
        self.shared[Board.CONTROL] = value

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for spec, process, pipe in self.started:
            while not self.shared[self.board.ready(spec.worker)]:
                if not process.is_alive() or pipe.poll():
                    raise PerfError(_failure(spec, pipe))
                if time.monotonic() > deadline:
                    raise PerfError(f"{spec.role} worker not ready after {timeout} s")
                time.sleep(0.01)

    def result(self, role: str, timeout: float = _RESULT_TIMEOUT) -> list[dict[str, Any]]:
        results = []
        for spec, process, pipe in self.started:
            if spec.role != role:
                continue
            if not pipe.poll(timeout):
                raise PerfError(f"{role} worker sent no result within {timeout} s")
            result = pipe.recv()
            if "error" in result:
                raise PerfError(f"{result['error']}\n{result.get('traceback', '')}")
            process.join(timeout)
            results.append(result)
        return results

    def pids(self, role: str) -> list[int]:
        return [process.pid for spec, process, _ in self.started if spec.role == role]

    def alive(self, role: str) -> bool:
        return any(process.is_alive() for spec, process, _ in self.started if spec.role == role)

    def kill(self) -> None:
        self.control(STOP)
        for _, process, _ in self.started:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)

    def sent(self) -> int:
        return self.shared[self.board.sent(0)]

    def confirmed(self) -> int:
        return self.shared[self.board.confirmed(0)]

    def consumed(self) -> list[int]:
        return [self.shared[self.board.consumed(q)] for q in range(self.board.queues)]


def _failure(spec: WorkerSpec, pipe: Any) -> str:
    if pipe.poll():
        result = pipe.recv()
        return f"{result.get('error')}\n{result.get('traceback', '')}"
    return f"{spec.role} worker exited before it was ready"


@dataclass
class _Snapshot:
    at: float
    sent: int
    confirmed: int
    consumed: list[int]
    tool_cpu: dict[str, float]


def _snapshot(workers: _Workers) -> _Snapshot:
    cpu: dict[str, float] = {}
    for role in ("producer", "consumer"):
        total = 0.0
        for pid in workers.pids(role):
            with contextlib.suppress(OSError):
                total += stats.read_proc(pid).cpu_seconds
        cpu[role] = total
    return _Snapshot(time.monotonic(), workers.sent(), workers.confirmed(), workers.consumed(), cpu)


def _run_messaging(config: PerfConfig, say: Progress) -> dict[str, Any]:
    run_id = secrets.token_hex(4)
    plan = _plan(config, run_id)
    server = trio.run(_setup, config, plan)
    meter = stats.BrokerMeter(config.broker_pid)
    workers = _Workers((plan.producer or plan.consumers[0]).board)
    try:
        for spec in plan.consumers:
            workers.start(spec)
        if plan.producer is not None:
            workers.start(plan.producer)
        workers.wait_ready()
        workers.control(RUN)
        time.sleep(config.warmup if not config.count else 0.0)
        workers.shared[Board.MEASURING] = 1
        meter.start()
        first = _snapshot(workers)
        last = _measure(config, workers, say, first)
        meter.stop()
        workers.shared[Board.MEASURING] = 0
        workers.control(STOP_PRODUCING)
        producer = workers.result("producer")[0] if plan.producer else {"sent": 0}
        drained = _drain(config, plan, workers, producer["sent"], say)
        workers.control(STOP_CONSUMING)
        consumers = workers.result("consumer")
        workers.control(STOP)
    finally:
        workers.kill()
        if not config.keep and config.scenario != "ceiling":
            with contextlib.suppress(Exception):
                trio.run(_teardown, config, plan)
    return _messaging_result(config, plan, server, meter, first, last, producer, consumers, drained)


def _measure(config: PerfConfig, workers: _Workers, say: Progress, first: _Snapshot) -> _Snapshot:
    """Sleep through the measurement window, reporting progress every second."""
    end = first.at + config.duration
    previous = first
    while True:
        now = time.monotonic()
        if config.count:
            if not workers.alive("producer") or workers.sent() >= config.count:
                return _snapshot(workers)
        elif now >= end:
            return _snapshot(workers)
        time.sleep(min(1.0, end - now) if not config.count else 1.0)
        current = _snapshot(workers)
        span = current.at - previous.at
        say(
            f"[{config.scenario}] {current.at - first.at:5.1f}s"
            f"  sent {stats.rate(current.sent - previous.sent, span):9.0f}/s"
            f"  confirmed {stats.rate(current.confirmed - previous.confirmed, span):8.0f}/s"
            f"  delivered {stats.rate(sum(current.consumed) - sum(previous.consumed), span):9.0f}/s"
            f"  total sent {current.sent}"
        )
        previous = current


def _expected(plan: _Plan, sent: int) -> list[int]:
    """Messages each queue should have delivered once everything sent is consumed."""
    if plan.producer is None or (plan.producer.max_inflight == 0 and not plan.consumers):
        return None
    if plan.topic is not None and plan.topic_matrix is not None:
        return [sum(row) for row in plan.topic.expected_counts(sent, plan.topic_matrix)]
    return [sent] * len(plan.queues)


def _drain(config: PerfConfig, plan: _Plan, workers: _Workers, sent: int, say: Progress) -> bool:
    """Let consumers take what is in flight; True when every expected delivery arrived."""
    if config.scenario == "ceiling" or not plan.consumers or plan.producer is None:
        return True
    expected = _expected(plan, sent)
    deadline = time.monotonic() + config.drain_timeout
    while time.monotonic() < deadline:
        if all(got >= want for got, want in zip(workers.consumed(), expected, strict=True)):
            return True
        time.sleep(0.02)
    say(f"[{config.scenario}] drain incomplete: got {workers.consumed()}, expected {expected}")
    return False


def _messaging_result(
    config: PerfConfig,
    plan: _Plan,
    server: dict[str, Any],
    meter: stats.BrokerMeter,
    first: _Snapshot,
    last: _Snapshot,
    producer: dict[str, Any],
    consumers: list[dict[str, Any]],
    drained: bool,
) -> dict[str, Any]:
    span = last.at - first.at
    published = last.sent - first.sent
    confirmed = last.confirmed - first.confirmed
    delivered = sum(last.consumed) - sum(first.consumed)
    result: dict[str, Any] = {
        "scenario": config.scenario,
        "broker": _broker_info(server),
        "url": _redact(config.url),
        "config": _config_summary(config),
        "window_s": span,
        "published": published,
        "published_per_s": stats.rate(published, span),
        "confirmed": confirmed,
        "confirmed_per_s": stats.rate(confirmed, span),
        "delivered": delivered,
        "delivered_per_s": stats.rate(delivered, span),
        "total_sent": producer["sent"],
        "total_delivered": sum(sum(c["consumed"]) for c in consumers),
        "drained": drained,
        "tool_cpu": {
            role: stats.rate(last.tool_cpu[role] - first.tool_cpu[role], span)
            for role in ("producer", "consumer")
        },
    }
    headline_count = confirmed if plan.headline == "confirmed_per_s" else delivered
    if config.scenario == "ceiling":
        headline_count = published
    result["broker_cpu_s"] = meter.cpu_seconds
    result["broker_cpu_us_per_msg"] = meter.cpu_us_per(headline_count)
    result["broker_cpu_us_per_published"] = meter.cpu_us_per(published)
    result["broker_rss_bytes"] = meter.rss_bytes
    if config.scenario == "latency":
        samples = array("q")
        for consumer in consumers:
            samples.frombytes(consumer["latency_ns"])
        result["latency"] = stats.latency_summary(samples)
        result["rate_target"] = config.rate
    if plan.topic is not None:
        result["topic"] = _verify_topic(plan, producer["sent"], consumers)
    result["headline"] = _headline(plan.headline, result)
    result["ok"] = drained and result.get("topic", {}).get("verified", True)
    return result


def _verify_topic(plan: _Plan, sent: int, consumers: list[dict[str, Any]]) -> dict[str, Any]:
    """Compare per (queue, key) delivery counts with the reference matcher's expectation."""
    assert plan.topic is not None and plan.topic_matrix is not None
    expected = plan.topic.expected_counts(sent, plan.topic_matrix)
    per_key: list[dict[str, int]] = []
    for consumer in consumers:
        per_key += consumer["per_key"]
    index = {key: k for k, key in enumerate(plan.topic.keys)}
    mismatches, unexpected = 0, 0
    for q, got in enumerate(per_key):
        for key, count in got.items():
            if key not in index:
                unexpected += count
        for k, key in enumerate(plan.topic.keys):
            if got.get(key, 0) != expected[q][k]:
                mismatches += 1
    matched = sum(map(sum, plan.topic_matrix))
    return {
        "bindings": sum(len(b) for b in plan.topic.bindings),
        "keys": len(plan.topic.keys),
        "queues": len(plan.topic.bindings),
        "deliveries_per_message": matched / len(plan.topic.keys),
        "expected_deliveries": sum(map(sum, expected)),
        "mismatched_queue_keys": mismatches,
        "unexpected_deliveries": unexpected,
        "verified": mismatches == 0 and unexpected == 0,
    }


def _headline(kind: str, result: dict[str, Any]) -> dict[str, Any]:
    if kind == "latency_p50_ms":
        return {"metric": "latency p50", "value": result["latency"]["p50_ms"], "unit": "ms"}
    if kind == "confirmed_per_s":
        return {"metric": "confirmed", "value": result["confirmed_per_s"], "unit": "msg/s"}
    if kind == "published_per_s":
        return {"metric": "published", "value": result["published_per_s"], "unit": "msg/s"}
    return {"metric": "delivered", "value": result["delivered_per_s"], "unit": "msg/s"}


def _config_summary(config: PerfConfig) -> dict[str, Any]:
    summary = asdict(config)
    summary.pop("extra", None)
    summary["url"] = _redact(config.url)
    return summary


def _redact(url: str) -> str:
    """The URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# ------------------------------------------------------------------------------------------------
# Idle connections
# ------------------------------------------------------------------------------------------------


def _run_connections(config: PerfConfig, say: Progress) -> dict[str, Any]:
    server = trio.run(_server_properties, config)
    board = Board(workers=1, producers=0, queues=1)
    workers = _Workers(board)
    meter = stats.BrokerMeter(config.broker_pid)
    spec = WorkerSpec(
        role="connections",
        url=config.url,
        board=board,
        worker=0,
        connections=config.connections,
        concurrency=config.connect_concurrency,
    )
    try:
        workers.start(spec)
        time.sleep(0.5)  # let the worker's interpreter start before the baseline sample
        meter.start()
        workers.control(RUN)
        began = time.monotonic()
        while not workers.shared[board.ready(0)]:
            if time.monotonic() - began > max(config.duration, 60.0) * 10:
                raise PerfError("connections were not all opened in time")
            if not workers.alive("connections"):
                break
            time.sleep(0.05)
            say(f"[connections] {time.monotonic() - began:5.1f}s opened {workers.consumed()[0]}")
        time.sleep(1.0)  # settle before the memory sample
        meter.stop()
        workers.control(STOP)
        result = workers.result("connections", timeout=120)[0]
    finally:
        workers.kill()
    opened = result["opened"]
    times = sorted(result["open_times_s"])
    rss_before = meter._start.rss_bytes if meter._start else None
    rss_after = meter.rss_bytes
    per_connection = (
        (rss_after - rss_before) / opened if rss_before and rss_after and opened else None
    )
    out: dict[str, Any] = {
        "scenario": "connections",
        "broker": _broker_info(server),
        "url": _redact(config.url),
        "config": _config_summary(config),
        "opened": opened,
        "failed": result["failed"],
        "failures": result["failures"],
        "open_total_s": result["open_total_s"],
        "opened_per_s": stats.rate(opened, result["open_total_s"]),
        "open_p50_ms": stats.percentile(times, 0.5) * 1e3,
        "open_p99_ms": stats.percentile(times, 0.99) * 1e3,
        "broker_rss_before_bytes": rss_before,
        "broker_rss_after_bytes": rss_after,
        "broker_rss_per_connection_kib": per_connection / 1024 if per_connection else None,
        "broker_cpu_s": meter.cpu_seconds,
        "broker_cpu_us_per_msg": meter.cpu_us_per(opened),
        "ok": result["failed"] == 0 and opened == config.connections,
    }
    out["headline"] = {
        "metric": "RSS per idle connection",
        "value": out["broker_rss_per_connection_kib"],
        "unit": "KiB",
    }
    return out


async def _server_properties(config: PerfConfig) -> dict[str, Any]:
    async with connect(config.url, connection_name="perf-probe") as conn:
        return conn.server_properties


# ------------------------------------------------------------------------------------------------
# The sink
# ------------------------------------------------------------------------------------------------


def _start_sink(size: int) -> tuple[Any, int]:
    from plugmq.perf.sink import sink_main

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=sink_main, args=(size, sender), name="perf-sink", daemon=True)
    process.start()
    sender.close()
    if not receiver.poll(_READY_TIMEOUT):
        process.kill()
        raise PerfError("the sink did not start")
    return process, receiver.recv()


__all__ = ["SCENARIOS", "WAIT", "PerfConfig", "PerfError", "run_scenario"]
