"""Two builds of plugmq side by side: every scenario of ``plugmq perf``, alternating, N runs.

Usage (from the repository root)::

    uv run python benchmarks/old_vs_new.py \\
        --old /work/wt-bench-old/.venv/bin/python --new /work/wt-bench-new/.venv/bin/python

Each build's broker runs under its own interpreter (so its own checkout and venv) in a data
directory of its own, with the Berkeley DB store and default flags, exactly as
``run_side_by_side.py`` starts plugmq. The load comes from ONE ``plugmq perf`` build for both
(``--tool``, default: the NEW interpreter), so only the broker differs. Every scenario of
``run_side_by_side.SCENARIOS`` runs once per build per run, alternating which build goes first
(OLD first in run 1, NEW first in run 2, ...), plus *recovery*: fill a durable queue with
``--recovery-count`` persistent messages (confirmed), ``kill -9``, restart, time until every
message is back, and read the restarted broker's RSS and CPU seconds.

A scenario is a *close call* when the NEW/OLD ratio of its medians is within
``--close`` (default 10 %) on its headline figure or on broker CPU, or when the pairs of runs
disagree on which build was faster; close calls get ``--close-runs`` runs in all (default 5).
Each result carries the 1-minute load average at its start (other work on the machine).
Writes ``--out`` (JSON, every run) and prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import PlugmqBroker
from recovery_and_backlog import recovery
from run_side_by_side import PLUGINS, SCENARIOS, fmt, perf, summary

RECOVERY = ("recovery after kill -9", "recovery", [])
ALL_SCENARIOS = [*SCENARIOS, RECOVERY]

#: per scenario kind: (headline key, unit, True when higher is better)
HEADLINE: dict[str, tuple[str, str, bool]] = {
    "connections": ("rss_per_connection_kib", "broker RSS per connection (KiB)", False),
    "latency": ("p50_ms", "p50 (ms)", False),
    "recovery": ("all_messages_back_s", "all messages back (s)", False),
}
CPU_KEY = {
    "connections": "broker_cpu_us_per_connection",
    "recovery": "restart_cpu_s",
}


def headline(scenario: str) -> tuple[str, str, bool]:
    """The key, unit and direction of a scenario's main figure."""
    unit = {"durable": "confirmed msg/s", "fanout": "deliveries/s", "topic": "deliveries/s"}
    return HEADLINE.get(scenario, ("rate", unit.get(scenario, "msg/s"), True))


def load_average() -> float:
    """The machine's 1-minute load average (2 cores: above 2 means queueing)."""
    return os.getloadavg()[0]


def run_one(
    broker: PlugmqBroker, scenario: str, extra: list[str], args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One scenario against one build; return (raw result, figures for the table)."""
    if scenario == "recovery":
        # a fresh data directory per run: the fill must start from an empty queue
        broker.stop()
        shutil.rmtree(broker.base / "data", ignore_errors=True)
        broker.start()
        figures = recovery(broker, args.recovery_count, 1000, python=args.tool)
        figures["ok"] = figures["messages_recovered"] == args.recovery_count
        # the next scenarios must not run beside a queue of recovered messages
        broker.stop()
        shutil.rmtree(broker.base / "data", ignore_errors=True)
        broker.start()
        return dict(figures), figures
    if scenario == "connections":
        # a warm heap would hide growth: measure on a freshly started broker
        broker.stop()
        broker.start()
    result = perf(broker.url, broker.pid, scenario, extra, args.duration, args.size, args.tool)
    return result, summary(result)


def close_call(
    old: list[dict[str, Any]], new: list[dict[str, Any]], scenario: str, close: float
) -> bool:
    """True when the builds cannot be told apart yet on headline or CPU."""
    for key, higher in ((headline(scenario)[0], headline(scenario)[2]), (cpu_key(scenario), False)):
        pairs = [
            (o[key], n[key]) for o, n in zip(old, new, strict=False) if o.get(key) and n.get(key)
        ]
        if not pairs:
            continue
        ratio = statistics.median(n for _, n in pairs) / statistics.median(o for o, _ in pairs)
        new_better = [n > o if higher else n < o for o, n in pairs]
        if abs(ratio - 1) < close or 0 < sum(new_better) < len(pairs):
            return True
    return False


def cpu_key(scenario: str) -> str:
    """The broker CPU figure of a scenario."""
    return CPU_KEY.get(scenario, "broker_cpu_us_per_msg")


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    """Median of ``key`` over runs (None values skipped)."""
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def markdown(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """The comparison table (medians), with how many pairs NEW won."""
    lines = [
        "| scenario | metric | runs | OLD | NEW | NEW / OLD | pairs NEW better (strictly) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, metric: str, key: str, digits: int, higher: bool) -> None:
        old, new = results[label]["old"], results[label]["new"]
        ours, theirs = median_of(new, key), median_of(old, key)
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else "-"
        pairs = [
            (o[key], n[key]) for o, n in zip(old, new, strict=False) if o.get(key) and n.get(key)
        ]
        won = sum(n > o if higher else n < o for o, n in pairs)
        lines.append(
            f"| {label} | {metric} | {len(new)} | {fmt(theirs, digits)} | {fmt(ours, digits)} "
            f"| {ratio} | {won} of {len(pairs)} |"
        )

    for label, scenario, _ in ALL_SCENARIOS:
        if label not in results:
            continue
        if scenario == "connections":
            row(label, "broker RSS per connection (KiB)", "rss_per_connection_kib", 1, False)
            row(label, "time to open all (s)", "open_total_s", 2, False)
            row(label, "broker CPU (µs / connection)", cpu_key(scenario), 0, False)
        elif scenario == "recovery":
            row(label, "fill: confirmed msg/s", "fill_confirmed_per_s", 0, True)
            row(label, "fill: broker CPU (µs / msg)", "fill_broker_cpu_us_per_msg", 1, False)
            row(label, "AMQP accepted (s)", "amqp_ready_s", 2, False)
            row(label, "all messages back (s)", "all_messages_back_s", 2, False)
            row(label, "broker CPU to restart (s)", "restart_cpu_s", 2, False)
            row(label, "RSS after recovery (MiB)", "rss_after_recovery_mib", 1, False)
        elif scenario == "latency":
            row(label, "delivered msg/s", "rate", 0, True)
            row(label, "p50 (ms)", "p50_ms", 3, False)
            row(label, "p99 (ms)", "p99_ms", 3, False)
            row(label, "broker CPU (µs / msg)", cpu_key(scenario), 1, False)
        else:
            row(label, headline(scenario)[1], "rate", 0, True)
            row(label, "broker CPU (µs / msg)", cpu_key(scenario), 1, False)
    loads = [r["load_1min"] for runs in results.values() for rs in runs.values() for r in rs]
    if loads:
        lines.append("")
        lines.append(
            f"1-minute load average at the start of each measurement: {min(loads):.1f} to "
            f"{max(loads):.1f} (median {statistics.median(loads):.1f}) on 2 cores."
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run everything alternating, write JSON and print markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="python of the OLD build's venv")
    parser.add_argument("--new", required=True, help="python of the NEW build's venv")
    parser.add_argument("--tool", help="python whose `plugmq perf` loads both (default: --new)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--close-runs", type=int, default=5, help="runs in all for close calls")
    parser.add_argument("--close", type=float, default=0.10, help="relative margin of a close call")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--recovery-count", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/old_vs_new.json"))
    parser.add_argument("--only", nargs="*", help="scenario names to run (e.g. latency recovery)")
    args = parser.parse_args()
    args.tool = args.tool or args.new
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="plugmq-old-vs-new-"))
    builds = {
        "old": PlugmqBroker(scratch / "old", *PLUGINS, python=args.old),
        "new": PlugmqBroker(scratch / "new", *PLUGINS, python=args.new),
    }
    scenarios = [s for s in ALL_SCENARIOS if not args.only or s[1] in args.only]
    results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    raw: list[dict[str, Any]] = []
    began = time.time()
    close: list[tuple[str, str, list[str]]] = []

    def one_run(run: int, todo: list[tuple[str, str, list[str]]]) -> None:
        for label, scenario, extra in todo:
            order = ["old", "new"] if run % 2 == 0 else ["new", "old"]
            for name in order:
                load = load_average()
                result, figures = run_one(builds[name], scenario, extra, args)
                figures["load_1min"] = result["load_1min"] = load
                result |= {"run": run, "label": label, "build": name}
                raw.append(result)
                results[label][name].append(figures)
                print(f"run {run + 1} {label:30s} {name} load {load:.1f} {figures}", flush=True)
                # keep what was measured so far, should a later run fail
                args.out.write_text(json.dumps({"partial": True, "results": raw}, default=str))

    try:
        for broker in builds.values():
            broker.start()
        for run in range(args.runs):
            one_run(run, scenarios)
        close = [
            s
            for s in scenarios
            if close_call(results[s[0]]["old"], results[s[0]]["new"], s[1], args.close)
        ]
        print(f"close calls: {[s[0] for s in close]}", flush=True)
        for run in range(args.runs, args.close_runs):
            one_run(run, close)
    finally:
        for broker in builds.values():
            broker.stop()
    table = markdown(results)
    document = {
        "started": began,
        "finished": time.time(),
        "old_python": args.old,
        "new_python": args.new,
        "tool_python": args.tool,
        "runs": args.runs,
        "close_runs": args.close_runs,
        "close_calls": [s[0] for s in close],
        "duration": args.duration,
        "size": args.size,
        "recovery_count": args.recovery_count,
        "results": raw,
        "medians_markdown": table,
    }
    args.out.write_text(json.dumps(document, indent=2, default=str))
    print(table)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
