"""Federation, one link: plugmq's federation plugin vs RabbitMQ's ``rabbitmq_federation``.

Usage (from the repository root)::

    uv run python benchmarks/federation.py --runs 3 --duration 8

Two brokers per side on loopback: A (upstream, the producer publishes there) and B
(downstream, the consumer reads a queue there bound to the federated exchange). plugmq runs
a pull route on B (``plugmq route add B A fed.x k``); RabbitMQ runs two private nodes with
``rabbitmq_federation`` enabled, an upstream on B pointing at A and a policy federating
``^fed\\.`` exchanges (B's link consumes a queue on A and republishes into B's exchange).

Scenarios (``SCENARIOS``):

* ``transient``: non-persistent messages at the highest rate the link sustains (the producer
  keeps at most ``--inflight`` messages in flight end to end), manual-ack consumer on B.
* ``persistent``: persistent messages, publisher confirms into A (window 100), acknowledged
  transfer over the link (RabbitMQ ``ack-mode: on-confirm``), durable queue on B.
* ``latency-1k`` / ``latency-10k``: the producer paced at a fixed rate, each message carries
  its send time; p50/p99 end to end through the hop.
* ``local-*``: the same producer and consumer on broker A alone (an exchange that is not
  federated): the baseline that gives the hop's added latency and the CPU of a local delivery.
* ``links-N``: N federated exchanges, one link/route each, N producers into A, one consumer
  process with a connection per queue on B; per-link and total rate at full speed.
  ``links-N-at-1k``: the same with every producer paced at 1,000 msg/s (``latency-1k`` is
  its N = 1): how many links one broker carries before they fall below half of that.

Broker CPU is ``utime + stime`` of each broker process (``beam.smp`` for RabbitMQ) over the
measured window, per message delivered on B. The other side's two idle brokers keep running;
their CPU in the window is recorded too (``idle_other_cpu_pct``). The brokers of both sides
are alternated per scenario and run (plugmq first in even runs); each run records
``/proc/loadavg``, because the machine is shared. Raw results go to
``benchmarks/results/federation.json``; medians are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import PlugmqBroker, RabbitMQBroker

from plugmq.perf import stats
from plugmq.perf.workers import (
    RUN,
    STOP,
    STOP_CONSUMING,
    STOP_PRODUCING,
    Board,
    WorkerSpec,
    start_worker,
)

PLUGINS = (
    "--no-autoload",
    "--load-module", "transport_tcp",
    "--load-module", "store_bdb",
    "--load-module", "federation",
)  # fmt: skip
KEY = "k"
PROBE_TIMEOUT = 90.0
READY_TIMEOUT = 60.0
RESULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Scenario:
    """One measured configuration."""

    name: str
    links: int = 1
    persistent: bool = False
    rate: float = 0.0
    """Messages/s per producer; 0 = as fast as the link takes them."""
    local: bool = False
    """Producer and consumer on broker A, no federation (the baseline)."""


SCENARIOS = [
    Scenario("transient"),
    Scenario("local-transient", local=True),
    Scenario("persistent", persistent=True),
    Scenario("local-persistent", persistent=True, local=True),
    Scenario("latency-1k", rate=1000),
    Scenario("local-latency-1k", rate=1000, local=True),
    Scenario("latency-10k", rate=10000),
    Scenario("local-latency-10k", rate=10000, local=True),
    Scenario("links-2", links=2),
    Scenario("links-4", links=4),
    Scenario("links-8", links=8),
    Scenario("links-2-at-1k", links=2, rate=1000),
    Scenario("links-4-at-1k", links=4, rate=1000),
    Scenario("links-8-at-1k", links=8, rate=1000),
]


# ------------------------------------------------------------------------------------------------
# The two sides: a pair of brokers and how to federate an exchange between them
# ------------------------------------------------------------------------------------------------


class Pair(Protocol):
    """Two brokers, A upstream and B downstream, and the federation between them."""

    kind: str
    mode: str

    @property
    def url_a(self) -> str: ...

    @property
    def url_b(self) -> str: ...

    def start(self) -> None: ...

    def pids(self) -> tuple[int, int]: ...

    def federate(self, exchanges: Sequence[str], persistent: bool) -> None: ...

    def diagnose(self) -> Any: ...

    def unfederate(self, exchanges: Sequence[str]) -> None: ...

    def stop(self) -> None: ...


class RabbitPair:
    """Two private RabbitMQ nodes with ``rabbitmq_federation``; B's upstream is A.

    ``ack-mode`` is ``on-confirm`` (RabbitMQ's default: a message is acked on A once B
    confirmed its copy, immediately for a transient message) in every scenario, because
    plugmq's routes have only that mode (``--ack N`` is the window of unacked messages, 1 at
    least). ``--rabbit-transient-ack-mode on-publish`` or ``no-ack`` measures the cheaper
    RabbitMQ modes for transient messages. Other upstream settings are RabbitMQ's defaults
    (``prefetch-count`` 1000, ``max-hops`` 1).
    """

    kind = "rabbitmq"

    def __init__(self, base: Path, transient_ack_mode: str = "on-confirm") -> None:
        tag = secrets.token_hex(3)
        plugins = ["rabbitmq_federation"]
        self.a = RabbitMQBroker(base / "a", node=f"fedbencha{tag}@localhost", plugins=plugins)
        self.b = RabbitMQBroker(base / "b", node=f"fedbenchb{tag}@localhost", plugins=plugins)
        self.transient_ack_mode = transient_ack_mode
        self.mode = f"transient: ack-mode {transient_ack_mode}; persistent: ack-mode on-confirm"

    @property
    def url_a(self) -> str:
        """AMQP URL of A."""
        return self.a.url

    @property
    def url_b(self) -> str:
        """AMQP URL of B."""
        return self.b.url

    def start(self) -> None:
        """Start both nodes and the policy that federates ``fed.*`` exchanges on B."""
        self.a.start()
        self.b.start()
        policy = json.dumps({"federation-upstream-set": "all"})
        self.b.ctl("set_policy", "--apply-to", "exchanges", "fed", r"^fed\.", policy)

    def pids(self) -> tuple[int, int]:
        """beam.smp of A and of B."""
        return self.a.pid, self.b.pid

    def federate(self, exchanges: Sequence[str], persistent: bool) -> None:
        """(Re)define the upstream with this scenario's ack mode; the policy does the rest.

        The exchanges already exist on B, so the policy has started their links; a changed
        upstream definition restarts them with the new ack mode.
        """
        upstream = {
            "uri": self.a.url.rstrip("/"),
            "ack-mode": "on-confirm" if persistent else self.transient_ack_mode,
        }
        self.b.ctl("set_parameter", "federation-upstream", "a", json.dumps(upstream))

    def diagnose(self) -> Any:
        """B's federation link status."""
        return self.b.ctl("eval", "rabbit_federation_status:status().")

    def unfederate(self, exchanges: Sequence[str]) -> None:
        """Nothing: deleting B's exchanges stops their links and removes A's queues."""

    def stop(self) -> None:
        """Stop both nodes."""
        self.b.stop()
        self.a.stop()


class PythonBroker(PlugmqBroker):
    """A plugmq broker run by a given interpreter (another worktree's venv, if asked)."""

    def __init__(self, python: str, base: Path, *args: str) -> None:
        super().__init__(base, *args)
        self.python = python

    def command(self) -> list[str]:
        """The broker's command line with ``self.python`` as the interpreter."""
        return [self.python, *super().command()[1:]]


class PlugmqPair:
    """Two plugmq brokers (TCP, Berkeley DB store, federation); pull routes run on B.

    Every route is acknowledged transfer (``--ack 100``, the plugin's default window: B acks
    a message on A once its copy is routed, and stored for a persistent message on a durable
    queue); persistent scenarios add ``--durable`` (the route and A's queue survive restarts).
    """

    kind = "plugmq"

    def __init__(self, base: Path, python: str, transient_ack: int = 100) -> None:
        self.python = python
        self.a = PythonBroker(python, base / "a", *PLUGINS)
        self.b = PythonBroker(python, base / "b", *PLUGINS)
        self.transient_ack = transient_ack
        self.mode = f"transient: route --ack {transient_ack}; persistent: route --ack 100 --durable"

    @property
    def url_a(self) -> str:
        """AMQP URL of A."""
        return self.a.url

    @property
    def url_b(self) -> str:
        """AMQP URL of B."""
        return self.b.url

    def start(self) -> None:
        """Start both brokers."""
        self.a.start()
        self.b.start()

    def pids(self) -> tuple[int, int]:
        """The broker processes of A and B."""
        return self.a.pid, self.b.pid

    def route(self, *args: str) -> str:
        """``plugmq route ...`` with this side's interpreter; raise if it fails."""
        done = subprocess.run(
            [self.python, "-m", "plugmq", "route", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"plugmq route {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def federate(self, exchanges: Sequence[str], persistent: bool) -> None:
        """A pull route per exchange (B runs the link), acked and durable when persistent."""
        for exchange in exchanges:
            flags = (
                ["--ack", "100", "--durable"] if persistent else ["--ack", str(self.transient_ack)]
            )
            self.route("add", self.url_b, self.url_a, exchange, KEY, *flags)

    def diagnose(self) -> Any:
        """B's ``plugmq link list --json`` (forwarded, duplicates, backlog of every link)."""
        done = subprocess.run(
            [self.python, "-m", "plugmq", "link", "list", self.url_b, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(done.stdout)
        return done.stdout + done.stderr

    def unfederate(self, exchanges: Sequence[str]) -> None:
        """Delete the routes again."""
        for exchange in exchanges:
            self.route("del", self.url_b, self.url_a, exchange, KEY)

    def stop(self) -> None:
        """Stop both brokers."""
        self.b.stop()
        self.a.stop()


# ------------------------------------------------------------------------------------------------
# Topology (pika: blocking, and the same client for both sides)
# ------------------------------------------------------------------------------------------------


@dataclass
class Topology:
    """The exchanges and queues of one run."""

    exchanges: list[str]
    queues: list[str]
    consumer_url: str
    durable_queues: bool


def _channel(url: str) -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    return connection, connection.channel()


def build(pair: Pair, scenario: Scenario, run_id: str) -> Topology:
    """Declare exchanges on A and B, the consumer's queues, federate, and wait until it flows."""
    prefix = "local" if scenario.local else "fed"
    exchanges = [f"{prefix}.{run_id}.x{i}" for i in range(scenario.links)]
    queues = [f"fedbench.{run_id}.q{i}" for i in range(scenario.links)]
    consumer_url = pair.url_a if scenario.local else pair.url_b
    topology = Topology(exchanges, queues, consumer_url, scenario.persistent)
    for url in {pair.url_a, consumer_url}:
        connection, channel = _channel(url)
        try:
            for exchange in exchanges:
                channel.exchange_declare(exchange, "direct", durable=True)
        finally:
            connection.close()
    connection, channel = _channel(consumer_url)
    try:
        for exchange, queue in zip(exchanges, queues, strict=True):
            channel.queue_declare(queue, durable=scenario.persistent)
            channel.queue_bind(queue, exchange, KEY)
    finally:
        connection.close()
    if not scenario.local:
        pair.federate(exchanges, scenario.persistent)
        probe(pair.url_a, topology)
    return topology


def probe(url_a: str, topology: Topology) -> None:
    """Publish to each exchange on A until a message arrives in its queue on B; purge after.

    A federated binding takes a moment to reach A (RabbitMQ) or a route to connect (plugmq):
    messages published before that are dropped by A's exchange, so the measured run must not
    start earlier.
    """
    producer, publish_channel = _channel(url_a)
    consumer, get_channel = _channel(topology.consumer_url)
    try:
        for exchange, queue in zip(topology.exchanges, topology.queues, strict=True):
            deadline = time.monotonic() + PROBE_TIMEOUT
            while True:
                # unique bodies: plugmq drops a message whose content it has seen (no
                # message_id: its duplicate window keys on the content); a send time in the
                # first 8 bytes keeps a straggler's latency sample sane
                body = struct.pack(">q", time.monotonic_ns()) + b"probe"
                publish_channel.basic_publish(exchange, KEY, body)
                method, _, _ = get_channel.basic_get(queue, auto_ack=True)
                if method is not None:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"nothing crossed the link for {exchange} in {PROBE_TIMEOUT} s"
                    )
                consumer.sleep(0.1)
        consumer.sleep(1.0)  # probes still on the way land before the purge
        for queue in topology.queues:
            get_channel.queue_purge(queue)
    finally:
        producer.close()
        consumer.close()


def tear_down(pair: Pair, scenario: Scenario, topology: Topology) -> None:
    """Delete the queues, the routes (plugmq) and the exchanges on both brokers."""
    connection, channel = _channel(topology.consumer_url)
    try:
        for queue in topology.queues:
            channel.queue_delete(queue)
    finally:
        connection.close()
    if not scenario.local:
        pair.unfederate(topology.exchanges)
    for url in {pair.url_b, pair.url_a, topology.consumer_url}:
        connection, channel = _channel(url)
        try:
            for exchange in topology.exchanges:
                channel.exchange_delete(exchange)
        finally:
            connection.close()


# ------------------------------------------------------------------------------------------------
# Measurement: plugmq perf's worker processes, producers on A, one consumer process on B
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tuning:
    """Knobs shared by every scenario."""

    duration: float = 8.0
    warmup: float = 1.0
    size: int = 100
    inflight: int = 5000
    confirm_window: int = 100
    prefetch: int = 100
    drain_timeout: float = 60.0


class Workers:
    """N producers (one per exchange) and one consumer process (a connection per queue)."""

    def __init__(self, pair: Pair, scenario: Scenario, topology: Topology, tuning: Tuning) -> None:
        links = scenario.links
        self.board = Board(workers=links + 1, producers=links, queues=links)
        self.shared = multiprocessing.get_context("spawn").RawArray("q", self.board.size)
        self.specs = [self._producer(pair, scenario, topology, tuning, i) for i in range(links)]
        self.specs.insert(0, self._consumer(scenario, topology, tuning))
        self.started: list[tuple[WorkerSpec, Any, Any]] = []

    def _producer(
        self, pair: Pair, scenario: Scenario, topology: Topology, tuning: Tuning, index: int
    ) -> WorkerSpec:
        return WorkerSpec(
            role="producer",
            url=pair.url_a,
            board=self.board,
            worker=index + 1,
            producer=index,
            exchange=topology.exchanges[index],
            routing_keys=[KEY],
            size=tuning.size,
            persistent=scenario.persistent,
            confirm_window=tuning.confirm_window if scenario.persistent else 0,
            rate=scenario.rate,
            max_inflight=tuning.inflight,
            # flow control compares this producer's sent count with the mean consumed per queue
            deliveries_per_message=float(scenario.links),
        )

    def _consumer(self, scenario: Scenario, topology: Topology, tuning: Tuning) -> WorkerSpec:
        return WorkerSpec(
            role="consumer",
            url=topology.consumer_url,
            board=self.board,
            worker=0,
            queues=topology.queues,
            queue_slots=[self.board.consumed(q) for q in range(scenario.links)],
            prefetch=tuning.prefetch,
            latency=True,
        )

    def start(self) -> None:
        """Start the consumer first, then the producers; wait until all are ready."""
        for spec in self.specs:
            process, pipe = start_worker(spec, self.shared)
            self.started.append((spec, process, pipe))
        deadline = time.monotonic() + READY_TIMEOUT
        for spec, process, pipe in self.started:
            while not self.shared[self.board.ready(spec.worker)]:
                if not process.is_alive() or pipe.poll():
                    raise RuntimeError(f"{spec.role} worker failed: {_error(pipe)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{spec.role} worker not ready after {READY_TIMEOUT} s")
                time.sleep(0.01)

    def control(self, value: int) -> None:
        """Set the control word every worker polls."""
        self.shared[Board.CONTROL] = value

    def results(self, role: str) -> list[dict[str, Any]]:
        """The result dicts of the workers of ``role``."""
        found = []
        for spec, process, pipe in self.started:
            if spec.role != role:
                continue
            if not pipe.poll(RESULT_TIMEOUT):
                raise TimeoutError(f"{role} worker sent no result in {RESULT_TIMEOUT} s")
            result = pipe.recv()
            if "error" in result:
                raise RuntimeError(f"{result['error']}\n{result.get('traceback', '')}")
            process.join(RESULT_TIMEOUT)
            found.append(result)
        return found

    def counts(self) -> tuple[list[int], list[int], list[int]]:
        """(sent, confirmed, consumed) per link, as the workers last reported them."""
        links = self.board.producers
        sent = [self.shared[self.board.sent(i)] for i in range(links)]
        confirmed = [self.shared[self.board.confirmed(i)] for i in range(links)]
        consumed = [self.shared[self.board.consumed(i)] for i in range(links)]
        return sent, confirmed, consumed

    def kill(self) -> None:
        """Stop every worker (bounded), killing those that linger."""
        self.control(STOP)
        for _, process, _ in self.started:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


def _error(pipe: Any) -> str:
    if pipe.poll():
        result = pipe.recv()
        return f"{result.get('error')}\n{result.get('traceback', '')}"
    return "exited before it was ready"


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (``uptime``'s figures)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def measure(
    pair: Pair, other: Pair | None, scenario: Scenario, tuning: Tuning, say: Any
) -> dict[str, Any]:
    """Build the topology, run the workers through warm-up and window, drain, tear down."""
    run_id = secrets.token_hex(3)
    load_before = loadavg()
    topology = build(pair, scenario, run_id)
    pid_a, pid_b = pair.pids()
    meters = {"a": stats.BrokerMeter(pid_a), "b": stats.BrokerMeter(pid_b)}
    idle = [stats.BrokerMeter(pid) for pid in (other.pids() if other else ())]
    workers = Workers(pair, scenario, topology, tuning)
    try:
        workers.start()
        workers.control(RUN)
        time.sleep(tuning.warmup)
        workers.shared[Board.MEASURING] = 1
        for meter in [*meters.values(), *idle]:
            meter.start()
        began = time.monotonic()
        first = workers.counts()
        per_second = _watch(workers, tuning.duration, say, f"{pair.kind} {scenario.name}")
        last = workers.counts()
        span = time.monotonic() - began
        for meter in [*meters.values(), *idle]:
            meter.stop()
        workers.shared[Board.MEASURING] = 0
        workers.control(STOP_PRODUCING)
        producers = workers.results("producer")
        drained = _drain(workers, [p["sent"] for p in producers], tuning.drain_timeout)
        workers.control(STOP_CONSUMING)
        diagnosis = None if drained else pair.diagnose()
        consumer = workers.results("consumer")[0]
        workers.control(STOP)
    finally:
        workers.kill()
        with contextlib.suppress(Exception):
            tear_down(pair, scenario, topology)
    return _result(pair, scenario, span, first, last, meters, idle, producers, consumer) | {
        "drained": drained,
        "links_when_not_drained": diagnosis,
        "per_second_delivered": per_second,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


def _watch(workers: Workers, duration: float, say: Any, label: str) -> list[float]:
    """Sleep through the window; return the delivered rate of each second."""
    rates = []
    end = time.monotonic() + duration
    previous = sum(workers.counts()[2])
    while (left := end - time.monotonic()) > 0:
        step = min(1.0, left)
        time.sleep(step)
        now = sum(workers.counts()[2])
        rates.append((now - previous) / step)
        previous = now
    say(f"  {label}: delivered/s per second {[round(r) for r in rates]}")
    return rates


def _drain(workers: Workers, sent: list[int], timeout: float) -> bool:
    """Wait (bounded) until every queue delivered what its producer sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(got >= want for got, want in zip(workers.counts()[2], sent, strict=True)):
            return True
        time.sleep(0.05)
    return False


def _result(
    pair: Pair,
    scenario: Scenario,
    span: float,
    first: tuple[list[int], list[int], list[int]],
    last: tuple[list[int], list[int], list[int]],
    meters: dict[str, stats.BrokerMeter],
    idle: list[stats.BrokerMeter],
    producers: list[dict[str, Any]],
    consumer: dict[str, Any],
) -> dict[str, Any]:
    sent = sum(last[0]) - sum(first[0])
    confirmed = sum(last[1]) - sum(first[1])
    per_link = [b - a for a, b in zip(first[2], last[2], strict=True)]
    delivered = sum(per_link)
    samples = array("q")
    samples.frombytes(consumer["latency_ns"])
    total_sent = sum(p["sent"] for p in producers)
    total_delivered = sum(consumer["consumed"])
    cpu = {name: meter.cpu_us_per(delivered) for name, meter in meters.items()}
    idle_cpu = sum(m.cpu_seconds or 0.0 for m in idle)
    return {
        "kind": pair.kind,
        "mode": pair.mode,
        "scenario": asdict(scenario),
        "window_s": span,
        "published_per_s": stats.rate(sent, span),
        "confirmed_per_s": stats.rate(confirmed, span),
        "delivered_per_s": stats.rate(delivered, span),
        "per_link_per_s": [stats.rate(n, span) for n in per_link],
        "broker_cpu_us_per_msg": {
            "a": cpu["a"],
            "b": cpu["b"],
            "total": None if None in cpu.values() else cpu["a"] + cpu["b"],
        },
        "broker_cpu_pct": {n: 100 * (m.cpu_seconds or 0.0) / span for n, m in meters.items()},
        "idle_other_cpu_pct": 100 * idle_cpu / span,
        "latency": stats.latency_summary(samples),
        "total_sent": total_sent,
        "total_delivered": total_delivered,
        "lost_or_late": max(0, total_sent - total_delivered),
        "extra_deliveries": max(0, total_delivered - total_sent),
    }


# ------------------------------------------------------------------------------------------------
# Runs, medians and the table
# ------------------------------------------------------------------------------------------------


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    """The numbers the table shows, from one result."""
    scenario = result["scenario"]
    rate_key = "confirmed_per_s" if scenario["persistent"] else "delivered_per_s"
    return {
        "rate": result[rate_key] if result[rate_key] else result["delivered_per_s"],
        "delivered_per_s": result["delivered_per_s"],
        "per_link_per_s": result["delivered_per_s"] / scenario["links"],
        "cpu_a": result["broker_cpu_us_per_msg"]["a"],
        "cpu_b": result["broker_cpu_us_per_msg"]["b"],
        "cpu_total": result["broker_cpu_us_per_msg"]["total"],
        "p50_ms": result["latency"]["p50_ms"],
        "p99_ms": result["latency"]["p99_ms"],
        "load1": result["loadavg_before"][0],
    }


def medians(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float | None]]:
    """Median of each figure per (scenario name, broker kind)."""
    grouped: dict[tuple[str, str], list[dict[str, float | None]]] = defaultdict(list)
    for result in results:
        grouped[(result["scenario"]["name"], result["kind"])].append(figures(result))
    out = {}
    for key, runs in grouped.items():
        out[key] = {
            name: (
                statistics.median(v)
                if (v := [r[name] for r in runs if r[name] is not None])
                else None
            )
            for name in runs[0]
        }
    return out


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: list[dict[str, Any]]) -> str:
    """The comparison table of medians."""
    table = medians(results)
    lines = [
        "| scenario | metric | plugmq | RabbitMQ | plugmq / RabbitMQ |",
        "|---|---|---:|---:|---:|",
    ]
    names = list(dict.fromkeys(r["scenario"]["name"] for r in results))
    rows = [
        ("rate", "msg/s (confirmed if persistent)", 0),
        ("per_link_per_s", "msg/s per link", 0),
        ("p50_ms", "p50 (ms)", 3),
        ("p99_ms", "p99 (ms)", 3),
        ("cpu_a", "CPU A (µs / msg)", 1),
        ("cpu_b", "CPU B (µs / msg)", 1),
        ("cpu_total", "CPU A+B (µs / msg)", 1),
        ("load1", "load avg (1 min) before", 2),
    ]
    for name in names:
        ours = table.get((name, "plugmq"), {})
        theirs = table.get((name, "rabbitmq"), {})
        for key, label, digits in rows:
            if key == "per_link_per_s" and not name.startswith("links"):
                continue
            # at full rate the latency is the in-flight window divided by the rate: skip it
            if key in ("p50_ms", "p99_ms") and "latency" not in name:
                continue
            if key == "cpu_b" and name.startswith("local"):
                continue
            a, b = ours.get(key), theirs.get(key)
            ratio = f"{a / b:.2f}x" if a and b else "-"
            lines.append(f"| {name} | {label} | {_fmt(a, digits)} | {_fmt(b, digits)} | {ratio} |")
    return "\n".join(lines)


def derived(results: list[dict[str, Any]]) -> str:
    """The answers the issue asks for, per broker, from the medians (markdown bullets)."""
    table = medians(results)
    lines = []
    for kind in ("plugmq", "rabbitmq"):

        def get(name: str, key: str, kind: str = kind) -> float | None:
            return table.get((name, kind), {}).get(key)

        link, local = get("transient", "cpu_total"), get("local-transient", "cpu_a")
        if link and local:
            lines.append(
                f"* {kind}: one link costs {link - local:,.1f} µs of broker CPU per message on"
                f" top of a local delivery ({link:,.1f} on A+B vs {local:,.1f} on one broker,"
                f" {link / local:.1f}x)"
            )
        for rate in ("1k", "10k"):
            hop, base = get(f"latency-{rate}", "p50_ms"), get(f"local-latency-{rate}", "p50_ms")
            got = get(f"latency-{rate}", "delivered_per_s")
            if hop is not None and base is not None:
                lines.append(
                    f"* {kind}: the hop adds {hop - base:,.3f} ms to p50 at {rate} msg/s"
                    f" ({hop:,.3f} vs {base:,.3f} ms; {got:,.0f} msg/s delivered)"
                )
        for suffix in ("", "-at-1k"):
            one = get("transient" if not suffix else "latency-1k", "delivered_per_s")
            if not one:
                continue
            halved, measured = None, []
            for n in (2, 4, 8):
                per_link = get(f"links-{n}{suffix}", "per_link_per_s")
                if per_link is None:
                    continue
                measured.append(f"N={n}: {per_link:,.0f}")
                if halved is None and per_link < one / 2:
                    halved = n
            if not measured:
                continue
            verdict = f"halves at N = {halved}" if halved else "never halves up to the largest N"
            lines.append(
                f"* {kind}: links {'at full speed' if not suffix else 'paced at 1k msg/s each'}:"
                f" one link {one:,.0f} msg/s; per link {', '.join(measured)}: {verdict}"
            )
    return "\n".join(lines)


def plugmq_source(python: str) -> dict[str, str]:
    """Where the benchmarked plugmq and its federation plugin come from (path, git commit)."""
    script = "import plugmq, plugmq_federation; print(plugmq_federation.__file__)"
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, check=False)
    where = Path(done.stdout.strip() or ".").resolve().parent
    git = ["git", "-C", str(where)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "."], capture_output=True, text=True)
    return {
        "python": python,
        "plugin": str(where),
        "commit": commit.stdout.strip(),
        "plugin_dir_dirty": str(bool(dirty.stdout.strip())),
    }


def main() -> None:
    """Parse arguments, start both sides, run every scenario alternating, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--inflight", type=int, default=5000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--kinds", nargs="*", default=["plugmq", "rabbitmq"])
    parser.add_argument("--only", nargs="*", help="scenario names to run")
    parser.add_argument(
        "--plugmq-python", default=sys.executable, help="interpreter whose plugmq runs the brokers"
    )
    parser.add_argument("--rabbit-transient-ack-mode", default="on-confirm")
    parser.add_argument("--plugmq-transient-ack", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/federation.json"))
    parser.add_argument("--report", type=Path, help="only print the tables of a results file")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())["results"]
        print(markdown(saved), derived(saved), sep="\n\n")
        return
    tuning = Tuning(duration=args.duration, size=args.size, inflight=args.inflight)
    scratch = Path(tempfile.mkdtemp(prefix="plugmq-fedbench-"))
    pairs: dict[str, Pair] = {}
    if "plugmq" in args.kinds:
        pairs["plugmq"] = PlugmqPair(
            scratch / "plugmq", args.plugmq_python, args.plugmq_transient_ack
        )
    if "rabbitmq" in args.kinds:
        pairs["rabbitmq"] = RabbitPair(scratch / "rabbitmq", args.rabbit_transient_ack_mode)
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    began = time.time()
    try:
        for pair in pairs.values():
            pair.start()
        for run in range(args.runs):
            for scenario in SCENARIOS:
                if args.only and scenario.name not in args.only:
                    continue
                order = list(pairs.values()) if run % 2 == 0 else list(pairs.values())[::-1]
                for pair in order:
                    other = next((p for p in pairs.values() if p is not pair), None)
                    try:
                        result = measure(pair, other, scenario, tuning, print)
                    except Exception as error:  # recorded in the JSON; the other runs go on
                        failures.append(
                            {
                                "kind": pair.kind,
                                "scenario": scenario.name,
                                "run": run,
                                "error": repr(error),
                            }
                        )
                        print(
                            f"run {run + 1} {scenario.name} {pair.kind} FAILED: {error!r}",
                            flush=True,
                        )
                        continue
                    result["run"] = run
                    results.append(result)
                    print(
                        f"run {run + 1} {scenario.name:18s} {pair.kind:8s} {figures(result)}",
                        flush=True,
                    )
    finally:
        for pair in pairs.values():
            with contextlib.suppress(Exception):
                pair.stop()
    table = markdown(results) if results else ""
    answers = derived(results) if results else ""
    document = {
        "started": began,
        "finished": time.time(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "tuning": asdict(tuning),
        "modes": {kind: pair.mode for kind, pair in pairs.items()},
        "plugmq_source": plugmq_source(args.plugmq_python) if "plugmq" in pairs else None,
        "results": results,
        "failures": failures,
        "medians_markdown": table,
        "derived_markdown": answers,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, default=str))
    print(table)
    print(answers)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
