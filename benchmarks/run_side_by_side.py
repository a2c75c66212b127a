"""plugmq and RabbitMQ side by side: every scenario of ``plugmq perf``, alternating, N runs.

Usage (from the repository root)::

    uv run python benchmarks/run_side_by_side.py --runs 3 --duration 10

It starts a plugmq broker (Berkeley DB store, fsync at every commit) and a private RabbitMQ
node from Debian's package, each on a free loopback port in a scratch directory, then runs
each scenario ``--runs`` times, alternating which broker goes first, with the very same tool
(``python -m plugmq perf ... --json``). Broker CPU per message comes from ``/proc/<pid>/stat``
of the broker process (``beam.smp`` for RabbitMQ). Idle-connection memory is measured on
freshly restarted brokers (a warm heap would hide growth). Results are written as JSON
and the medians printed as a markdown table. With ``--profile`` it also samples the plugmq
broker with py-spy during one extra throughput run and summarises the top frames.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brokers import PlugmqBroker, RabbitMQBroker

PLUGINS = ("--no-autoload", "--load-module", "transport_tcp", "--load-module", "store_bdb")

#: (label, scenario, extra perf arguments)
SCENARIOS: list[tuple[str, str, list[str]]] = [
    ("throughput (manual ack)", "throughput", []),
    ("throughput (no ack)", "throughput-noack", []),
    ("durable (confirms, window 100)", "durable", []),
    ("fanout (10 queues)", "fanout", []),
    ("topic (1000 bindings)", "topic", []),
    ("latency at 1k msg/s", "latency", ["--rate", "1000"]),
    ("latency at 10k msg/s", "latency", ["--rate", "10000"]),
    ("1000 idle connections", "connections", []),
]


def perf(
    url: str,
    pid: int,
    scenario: str,
    extra: list[str],
    duration: float,
    size: int,
    python: str | None = None,
) -> dict[str, Any]:
    """Run one scenario with the perf tool in a subprocess; return its JSON result.

    ``python`` is the interpreter whose ``plugmq perf`` runs (default: this one).
    """
    command = [
        python or sys.executable, "-m", "plugmq", "perf", scenario, *PLUGINS[:1],
        "--url", url, "--broker-pid", str(pid), "--duration", str(duration),
        "--size", str(size), "--json", "--quiet", *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration * 10 + 300)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"perf {scenario} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the comparison table shows, from one result."""
    if result["scenario"] == "connections":
        return {
            "rss_per_connection_kib": result["broker_rss_per_connection_kib"],
            "open_total_s": result["open_total_s"],
            "broker_cpu_us_per_connection": result["broker_cpu_us_per_msg"],
            "ok": result["ok"],
        }
    out = {
        "rate": result["headline"]["value"]
        if result["scenario"] != "latency"
        else result["delivered_per_s"],
        "broker_cpu_us_per_msg": result["broker_cpu_us_per_msg"],
        "broker_rss_mib": (result["broker_rss_bytes"] or 0) / 2**20,
        "tool_cpu_producer": result["tool_cpu"]["producer"],
        "tool_cpu_consumer": result["tool_cpu"]["consumer"],
        "ok": result["ok"],
    }
    if result.get("latency"):
        out |= {k: result["latency"][k] for k in ("p50_ms", "p99_ms", "p999_ms")}
    return out


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    """Median of ``key`` over runs (None values skipped)."""
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0) -> str:
    """A number for the table."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def markdown(results: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """The comparison table (medians)."""
    lines = [
        "| scenario | metric | plugmq | RabbitMQ | plugmq / RabbitMQ |",
        "|---|---|---:|---:|---:|",
    ]

    def row(label: str, metric: str, key: str, digits: int = 0, better: str = "high") -> None:
        ours = median_of(results[label]["plugmq"], key)
        theirs = median_of(results[label]["rabbitmq"], key)
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else "-"
        lines.append(
            f"| {label} | {metric} | {fmt(ours, digits)} | {fmt(theirs, digits)} | {ratio} |"
        )

    for label, scenario, _ in SCENARIOS:
        if label not in results:
            continue
        if scenario == "connections":
            row(label, "broker RSS per connection (KiB)", "rss_per_connection_kib", 1)
            row(label, "time to open all (s)", "open_total_s", 2)
            continue
        if scenario == "latency":
            row(label, "p50 (ms)", "p50_ms", 3)
            row(label, "p99 (ms)", "p99_ms", 3)
            row(label, "p99.9 (ms)", "p999_ms", 3)
        else:
            unit = {
                "durable": "confirmed msg/s",
                "fanout": "deliveries/s",
                "topic": "deliveries/s",
            }.get(scenario, "msg/s")
            row(label, unit, "rate")
        row(label, "broker CPU (µs / msg)", "broker_cpu_us_per_msg", 1)
    return "\n".join(lines)


def profile(broker: PlugmqBroker, duration: float, out: Path) -> str:
    """py-spy the plugmq broker during a throughput run; return a markdown summary."""
    spy = shutil.which("py-spy")
    command = [spy] if spy else ["uvx", "py-spy"]
    raw = out / "pyspy-throughput.txt"
    runner = subprocess.Popen(
        [sys.executable, "-m", "plugmq", "perf", "throughput", "--no-autoload",
         "--url", broker.url, "--duration", str(duration), "--quiet", "--json"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(3)
    subprocess.run(
        [*command, "record", "-p", str(broker.pid), "-d", str(int(duration - 3)), "-r", "250",
         "-f", "raw", "-o", str(raw), "--nonblocking"],
        check=True, capture_output=True,
    )  # fmt: skip
    runner.wait(600)
    return summarise_profile(raw)


def summarise_profile(raw: Path, top: int = 20) -> str:
    """Self and inclusive shares of the hottest frames in a py-spy raw (collapsed) file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            if "plugmq" in frame or "trio" in frame:
                inclusive[frame] += n
    lines = [f"py-spy samples: {total}", "", "| self % | frame |", "|---:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{frame}` |" for frame, n in own.most_common(top)]
    lines += ["", "| inclusive % | frame |", "|---:|---|"]
    lines += [
        f"| {100 * n / total:.1f} | `{frame}` |" for frame, n in inclusive.most_common(top + 10)
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run everything, write JSON and markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", nargs="*", help="labels' scenario names to run")
    parser.add_argument("--profile", action="store_true", help="py-spy the plugmq broker")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="plugmq-bench-"))
    plugmq = PlugmqBroker(scratch / "plugmq", *PLUGINS)
    rabbit = RabbitMQBroker(scratch / "rabbitmq")
    results: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    raw: list[dict[str, Any]] = []
    began = time.time()
    try:
        plugmq.start()
        rabbit.start()
        ceiling = perf(plugmq.url, plugmq.pid, "ceiling", [], args.duration, args.size)
        print(
            f"tool ceiling: publish {ceiling['published_per_s']:,.0f}/s, "
            f"consume (manual ack) {ceiling['delivered_per_s']:,.0f}/s",
            flush=True,
        )
        for run in range(args.runs):
            for label, scenario, extra in SCENARIOS:
                if args.only and scenario not in args.only:
                    continue
                order = [plugmq, rabbit] if run % 2 == 0 else [rabbit, plugmq]
                for broker in order:
                    if scenario == "connections":
                        broker.stop()
                        broker.start()
                    result = perf(broker.url, broker.pid, scenario, extra, args.duration, args.size)
                    result["run"] = run
                    result["label"] = label
                    raw.append(result)
                    figures = summary(result)
                    results[label][broker.kind].append(figures)
                    print(f"run {run + 1} {label:32s} {broker.kind:8s} {figures}", flush=True)
        table = markdown(results)
        profile_text = profile(plugmq, args.duration, args.out) if args.profile else ""
    finally:
        plugmq.stop()
        rabbit.stop()
    document = {
        "started": began,
        "finished": time.time(),
        "runs": args.runs,
        "duration": args.duration,
        "size": args.size,
        "ceiling": ceiling,
        "results": raw,
        "medians_markdown": table,
        "profile_markdown": profile_text,
    }
    (args.out / "side_by_side.json").write_text(json.dumps(document, indent=2, default=str))
    print(table)
    if profile_text:
        (args.out / "profile.md").write_text(profile_text + "\n")
        print(profile_text)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
