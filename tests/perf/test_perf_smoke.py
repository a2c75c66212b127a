"""Smoke runs of ``plugmq perf``: every scenario for about a second against a real broker.

These check that each scenario moves messages and prints valid JSON with the expected
fields. They assert nothing about speed (no timed assertions: CI machines vary).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess, broker_process

SCENARIO_ARGS = {
    "throughput": [],
    "throughput-noack": [],
    "durable": [],
    "fanout": ["--queues", "3"],
    "topic": ["--queues", "4", "--bindings", "200", "--keys", "100"],
    "latency": ["--rate", "500"],
    "connections": ["--connections", "20", "--connect-concurrency", "5"],
    "backlog": ["--count", "300"],
    "ceiling": [],
}


@pytest.fixture(scope="module")
def perf_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker of its own (the scenarios use amq.fanout and amq.topic)."""
    process = broker_process(tmp_path_factory.mktemp("perf"), "--store", "memory").start()
    yield process
    process.stop()


def run_perf(broker: BrokerProcess, scenario: str, *args: str) -> dict:
    """Run ``plugmq perf`` for about a second; return its parsed JSON output."""
    assert broker.process is not None
    command = [
        sys.executable, "-m", "plugmq", "perf", scenario, "--no-autoload",
        "--url", broker.url, "--broker-pid", str(broker.process.pid),
        "--duration", "1", "--warmup", "0.2", "--json", "--quiet", *args,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=90, cwd=Path(__file__).parent
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("scenario", list(SCENARIO_ARGS))
def test_scenario_runs_and_reports_json(perf_broker: BrokerProcess, scenario: str) -> None:
    result = run_perf(perf_broker, scenario, *SCENARIO_ARGS[scenario])
    assert result["scenario"] == scenario
    assert result["ok"] is True
    assert set(result["headline"]) == {"metric", "value", "unit"}
    assert result["broker"]["product"]
    if scenario == "connections":
        assert result["opened"] == 20
        assert result["failed"] == 0
        assert result["open_total_s"] > 0
        assert "broker_rss_per_connection_kib" in result
        return
    assert result["published"] > 0
    assert result["total_sent"] > 0
    for field in ("published_per_s", "delivered_per_s", "window_s", "tool_cpu", "drained"):
        assert field in result
    assert result["broker_cpu_s"] is not None
    if scenario == "backlog":
        assert result["total_sent"] == 300
        assert result["confirmed"] > 0
        return
    assert result["delivered"] > 0
    if scenario == "ceiling":
        assert set(result["phases"]) == {"publish", "consume-ack"}
        return
    assert result["total_delivered"] >= result["total_sent"]
    if scenario == "durable":
        assert result["confirmed"] > 0
    if scenario == "latency":
        assert set(result["latency"]) >= {"p50_ms", "p99_ms", "p999_ms", "samples"}
        assert result["latency"]["samples"] > 0
    if scenario == "topic":
        assert result["topic"]["verified"] is True
        assert result["topic"]["bindings"] == 200


def test_unknown_scenario_is_a_clear_error(perf_broker: BrokerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "plugmq", "perf", "nope", "--no-autoload", "--url", perf_broker.url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "unknown scenario 'nope'" in done.stderr


def test_queue_arguments_reach_the_declared_queue(perf_broker: BrokerProcess) -> None:
    # A value the broker refuses proves the argument was sent with the declaration.
    command = [
        sys.executable, "-m", "plugmq", "perf", "durable", "--no-autoload", "--url",
        perf_broker.url, "--duration", "1", "--queue-arg", "x-queue-type=bogus",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "x-queue-type" in done.stderr and "bogus" in done.stderr
    result = run_perf(perf_broker, "durable", "--queue-arg", "x-queue-type=classic")
    assert result["config"]["queue_arguments"] == {"x-queue-type": "classic"}
    assert result["confirmed"] > 0


def test_a_queue_argument_that_is_not_key_value_is_a_clear_error(
    perf_broker: BrokerProcess,
) -> None:
    command = [
        sys.executable, "-m", "plugmq", "perf", "durable", "--no-autoload", "--url",
        perf_broker.url, "--queue-arg", "x-queue-type",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--queue-arg 'x-queue-type' is not KEY=VALUE" in done.stderr
