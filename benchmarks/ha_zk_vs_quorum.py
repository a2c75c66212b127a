"""Issue #16 side by side: plugmq ``--ha zookeeper`` (3 replicas) vs a RabbitMQ quorum queue.

Usage (from the repository root)::

    uv run python benchmarks/ha_zk_vs_quorum.py --runs 3 --duration 10 --rounds 20 --catch-up

In one run, on this machine, both set-ups up at the same time:

* **plugmq**: one real ZooKeeper (``tests/support/zookeeper.py``) and three brokers with
  ``--ha zookeeper --replicas 3 --bdb-sync commit`` (``tests/support/zk_group.py``);
* **RabbitMQ**: three private nodes of Debian's ``rabbitmq-server`` joined into one cluster
  (``benchmarks/rabbit_cluster.py``), the queues declared with ``x-queue-type: quorum``.

Figures:

* **durable**: ``plugmq perf durable`` against the master / the node the quorum queue is
  declared on (its leader): one producer process (publisher confirms, a window of
  ``--confirm-window``, persistent ``--size``-byte messages), one consumer process (manual
  ack, prefetch ``--prefetch``), the same for both; confirmed msg/s in perf's measured window,
  and broker CPU per message: the **sum of the three brokers' CPU** (``/proc``, every thread,
  ``beam.smp`` for RabbitMQ) over the whole perf run divided by every message it sent. Runs
  alternate (plugmq first in odd runs); medians. The idle side's CPU meanwhile is recorded.
* **failover**: kill -9 of the master / the quorum queue's leader node (the broker process
  itself: the plugmq interpreter, ``beam.smp``), then the time until a persistent message
  published after the kill is confirmed: a client (``plugmq.client``, the same for both) tries
  the other two nodes in turn (5 s per attempt) until one confirms. p50 and max over
  ``--rounds`` rounds; the killed node restarts and rejoins (plugmq: ``ha_zk.caught_up``;
  RabbitMQ: the queue's member online again) before the next round.
* **catch-up** (``--catch-up``, plugmq): a replica's disk is replaced (killed, data directory
  wiped, its node under ``<zk-path>/sites`` removed), ``--catch-up-count`` persistent messages
  are confirmed into the two others, then the empty broker starts: seconds from its start to
  ``ha_zk.caught_up``, msg/s and MB/s (its data directory's size once caught up).

Writes ``benchmarks/results/ha_zk_vs_quorum.json`` and prints markdown tables. Everything it
starts (ZooKeeper, brokers, RabbitMQ nodes) it stops, also on errors and Ctrl-C. The figures
are whatever this machine gives: nothing here expects a failover time or a rate.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kazoo.client import KazooClient  # noqa: E402
from rabbit_cluster import RabbitCluster  # noqa: E402
from support.bulk_messages import fill  # noqa: E402
from support.zk_group import HAGroup  # noqa: E402
from support.zookeeper import ZooKeeperEnsemble  # noqa: E402

from plugmq.client import AMQPClientError, connect  # noqa: E402
from plugmq.logging import configure_logging  # noqa: E402
from plugmq.perf.scenarios import PerfConfig, run_scenario  # noqa: E402
from plugmq.perf.stats import read_proc  # noqa: E402

FAILOVER_QUEUE = "failover"
ATTEMPT_SECONDS = 5.0


class Side(Protocol):
    """One of the two replicated set-ups."""

    name: str
    queue_arguments: dict[str, str]

    def pids(self) -> list[int]:
        """The three broker processes."""

    def url(self) -> str:
        """Where perf and the first declarations go (master / the node to lead the queue)."""

    def leader_pid(self) -> int:
        """The process of :meth:`url`'s broker."""

    def leader(self, queue: str) -> int:
        """Index of the node that confirms publishes to ``queue`` now."""

    def kill(self, index: int) -> None:
        """kill -9 the broker process of node ``index``."""

    def urls_except(self, index: int) -> list[str]:
        """The other nodes' URLs."""

    def rejoin(self, index: int, queue: str) -> None:
        """Restart killed node ``index`` and wait until it holds ``queue`` again."""

    def stop(self) -> None:
        """Stop everything this side started."""


class PlugmqSide:
    """One ZooKeeper and three ``--ha zookeeper`` brokers."""

    name = "plugmq ha_zk"
    queue_arguments: dict[str, str] = {}

    def __init__(self, base: Path, bdb_sync: str) -> None:
        self.zk = ZooKeeperEnsemble(base / "zk")  # its ports are chosen here, before start
        self.group = HAGroup(base, self.zk.hosts, "/plugmq/bench")
        for broker in self.group.brokers:
            args = broker.args
            args[args.index("--bdb-sync") + 1] = bdb_sync
        self.master = -1

    def start(self) -> None:
        """Start ZooKeeper and the group; wait for the master."""
        self.zk.start()
        self.group.start()
        self.master = self.group.master()

    def pids(self) -> list[int]:
        """The brokers' processes (the interpreters themselves, no wrapper)."""
        return [b.process.pid for b in self.group.brokers if b.alive]

    def url(self) -> str:
        """The master's URL."""
        return self.group.brokers[self.master].url

    def leader_pid(self) -> int:
        """The master's process."""
        return self.group.brokers[self.master].process.pid

    def leader(self, queue: str) -> int:
        """The master confirms every queue."""
        return self.master

    def kill(self, index: int) -> None:
        """kill -9 the broker."""
        self.group.brokers[index].kill()

    def urls_except(self, index: int) -> list[str]:
        """The other brokers' URLs."""
        return [b.url for i, b in enumerate(self.group.brokers) if i != index]

    def rejoin(self, index: int, queue: str) -> None:
        """Learn the new master, restart the killed broker, wait until it caught up."""
        self.master = self.group.master(among=tuple(i for i in range(3) if i != index))
        broker = self.group.brokers[index]
        broker.start(ready_event="broker_listening")
        broker.wait_event("ha_zk.caught_up", timeout=300)

    def stop(self) -> None:
        """Kill the brokers and ZooKeeper."""
        self.group.stop()
        self.zk.stop()


class RabbitSide:
    """Three clustered RabbitMQ nodes; every queue a quorum queue."""

    name = "RabbitMQ quorum queue"
    queue_arguments = {"x-queue-type": "quorum"}

    def __init__(self, base: Path) -> None:
        self.cluster = RabbitCluster(base)

    def start(self) -> None:
        """Start and cluster the nodes."""
        self.cluster.start()

    def pids(self) -> list[int]:
        """The nodes' ``beam.smp`` processes."""
        return [node.pid for node in self.cluster.alive()]

    def url(self) -> str:
        """The first node (queues declared there are led there: client-local leader)."""
        return self.cluster.nodes[0].url

    def leader_pid(self) -> int:
        """The first node's beam.smp (where perf's queue is declared, hence led)."""
        return self.cluster.nodes[0].pid

    def leader(self, queue: str) -> int:
        """The quorum queue's leader node."""
        return self.cluster.leader(queue)

    def kill(self, index: int) -> None:
        """kill -9 the node's beam.smp (and its start script)."""
        self.cluster.nodes[index].kill9()

    def urls_except(self, index: int) -> list[str]:
        """The other nodes' URLs."""
        return [n.url for i, n in enumerate(self.cluster.nodes) if i != index]

    def rejoin(self, index: int, queue: str) -> None:
        """Restart the node; wait until the queue has a member on every node again."""
        self.cluster.start_node(index)
        self.cluster.wait_members_online(queue)

    def stop(self) -> None:
        """Stop the nodes."""
        self.cluster.stop()


# --- durable throughput ---------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> list[float]:
    """CPU seconds each process used so far."""
    return [read_proc(pid).cpu_seconds for pid in pids]


def durable(side: Side, idle: Side, args: argparse.Namespace) -> dict[str, Any]:
    """One ``perf durable`` run against ``side``; its rate and the brokers' CPU per message."""
    pids, idle_pids = side.pids(), idle.pids()
    config = PerfConfig(
        scenario="durable",
        url=side.url(),
        size=args.size,
        duration=args.duration,
        warmup=args.warmup,
        confirm_window=args.confirm_window,
        prefetch=args.prefetch,
        queue_arguments=dict(side.queue_arguments),
        broker_pid=side.leader_pid(),  # perf's own figure: that broker, measured window only
    )
    before, idle_before, started = cpu_seconds(pids), cpu_seconds(idle_pids), time.monotonic()
    result = run_scenario(config, lambda line: print(f"  {side.name}: {line}", flush=True))
    after, idle_after = cpu_seconds(pids), cpu_seconds(idle_pids)
    elapsed = time.monotonic() - started
    used = [a - b for a, b in zip(after, before, strict=True)]
    messages = int(result["total_sent"])
    return {
        "side": side.name,
        "confirmed_per_s": round(result["confirmed_per_s"], 1),
        "messages": messages,
        "ok": result["ok"],
        "cpu_seconds_per_broker": [round(u, 2) for u in used],
        "cpu_us_per_msg": round(sum(used) / messages * 1e6, 1),
        "idle_other_side_cpu_pct": round(
            100 * sum(a - b for a, b in zip(idle_after, idle_before, strict=True)) / elapsed, 1
        ),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "perf": {k: v for k, v in result.items() if k not in ("config", "broker")},
    }


# --- failover ---------------------------------------------------------------------------------


async def _confirm_one(url: str, body: bytes) -> None:
    async with (
        connect(url, connect_timeout=ATTEMPT_SECONDS, connection_name="failover-probe") as conn,
        conn.channel() as channel,
    ):
        await channel.confirm_select()
        await channel.publish_confirmed("", FAILOVER_QUEUE, body, {"delivery_mode": 2})


async def first_confirm(urls: list[str], deadline: float) -> str:
    """Try ``urls`` in turn until one confirms a persistent publish; the URL that did."""
    attempt = 0
    while time.monotonic() < deadline:
        url = urls[attempt % len(urls)]
        attempt += 1
        with trio.move_on_after(ATTEMPT_SECONDS):
            try:
                await _confirm_one(url, f"after-kill-{attempt}".encode())
                return url
            except (AMQPClientError, OSError):
                await trio.sleep(0.02)  # refused (a replica, a dead node): the next one at once
    raise TimeoutError(f"nothing confirmed by {urls}")


async def _declare(url: str, arguments: dict[str, str]) -> None:
    async with connect(url) as conn, conn.channel() as channel:
        await channel.queue_declare(FAILOVER_QUEUE, durable=True, arguments=arguments or None)
        await channel.confirm_select()
        await channel.publish_confirmed("", FAILOVER_QUEUE, b"first", {"delivery_mode": 2})


def failovers(side: Side, rounds: int) -> dict[str, Any]:
    """``rounds`` kills of the node confirming the failover queue; seconds to the next confirm."""
    trio.run(_declare, side.url(), side.queue_arguments)
    if isinstance(side, RabbitSide):
        side.cluster.wait_members_online(FAILOVER_QUEUE)
    times, killed_nodes = [], []
    for round_ in range(rounds):
        leader = side.leader(FAILOVER_QUEUE)
        urls = side.urls_except(leader)
        side.kill(leader)
        started = time.monotonic()
        url = trio.run(first_confirm, urls, started + 120)
        times.append(time.monotonic() - started)
        killed_nodes.append(leader)
        print(f"  {side.name}: round {round_ + 1}: {times[-1]:.3f} s (confirmed by {url})")
        side.rejoin(leader, FAILOVER_QUEUE)
    return {
        "side": side.name,
        "seconds": [round(t, 3) for t in times],
        "killed": killed_nodes,
        "p50": round(statistics.median(times), 3) if times else None,
        "max": round(max(times), 3) if times else None,
    }


# --- catch-up ---------------------------------------------------------------------------------


def _retire_site(side: PlugmqSide, index: int) -> None:
    """Remove broker ``index``'s node under ``<zk-path>/sites`` (the operator's step before
    replacing its disk; a broker with a new identity is refused while it is there)."""
    events = side.group.brokers[index].events()
    joined = [e for e in events if e["event"] == "ha_zk.joined"][-1]  # restarts keep the id
    client = KazooClient(hosts=side.zk.hosts)
    client.start(10)
    try:
        client.delete(f"{side.group.zk_path}/sites/{joined['broker_id']}")
    finally:
        client.stop()
        client.close()


def directory_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def catch_up(side: PlugmqSide, count: int) -> dict[str, Any]:
    """Replace a replica's disk, fill ``count`` messages, time the empty replica's catch-up."""
    new = next(i for i in range(3) if i != side.master)
    broker = side.group.brokers[new]
    broker.kill()
    shutil.rmtree(broker.data_dir)
    _retire_site(side, new)
    print(f"  catch-up: filling {count} confirmed messages into the master ...", flush=True)
    # One channel with batches of 5000: under load, 8 channels of 1000 had a quarter of their
    # batches nacked (quorum acks later than the 2 s ack timeout with --bdb-sync commit).
    filled = trio.run(lambda: fill(side.url(), "catch-up", count, channels=1, batch=5000))
    master_bytes = directory_bytes(side.group.brokers[side.master].data_dir)
    started = time.monotonic()
    broker.start(ready_event="broker_listening")
    broker.wait_event("ha_zk.caught_up", timeout=1800)
    seconds = time.monotonic() - started
    size = directory_bytes(broker.data_dir)
    progress = [e for e in broker.events() if e["event"] == "ha_zk.catching_up"]
    return {
        "messages": count,
        "fill_seconds": round(filled.seconds, 1),
        "fill_per_s": round(count / filled.seconds),
        "fill_republished": len(filled.republished),
        "fill_nacked_batches": filled.nacked_batches,
        "seconds": round(seconds, 2),
        "msg_per_s": round(count / seconds),
        "replica_bytes": size,
        "master_bytes": master_bytes,
        "mb_per_s": round(size / seconds / 1e6, 1),
        "progress_events": len(progress),
    }


# --- report -----------------------------------------------------------------------------------


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def markdown(result: dict[str, Any]) -> str:
    """The tables of a result."""
    names = ["plugmq ha_zk", "RabbitMQ quorum queue"]
    lines = ["| figure | plugmq `ha_zk`, 3 replicas | RabbitMQ 3-node quorum queue | ratio |"]
    lines.append("|---|---:|---:|---:|")
    runs = result.get("durable", [])

    def row(label: str, values: list[float | None], digits: int = 0) -> None:
        shown = [f"{v:,.{digits}f}" if v is not None else "" for v in values]
        ratio = f"{values[0] / values[1]:.2f}x" if None not in values and values[1] else ""
        lines.append(f"| {label} | {shown[0]} | {shown[1]} | {ratio} |")

    if runs:
        per = {name: [r for r in runs if r["side"] == name] for name in names}
        if all(per.values()):
            n = len(per[names[0]])
            rates = [_median(per[s], "confirmed_per_s") for s in names]
            row(f"durable confirmed msg/s (median of {n})", rates)
            cpu = [_median(per[s], "cpu_us_per_msg") for s in names]
            row("broker CPU, sum of 3 brokers (µs / msg)", cpu, 1)
    fail = {f["side"]: f for f in result.get("failover", [])}
    if all(name in fail for name in names):
        n = len(fail[names[0]]["seconds"])
        row(f"failover p50 (s, {n} kills)", [fail[s]["p50"] for s in names], 3)
        row(f"failover max (s, {n} kills)", [fail[s]["max"] for s in names], 3)
    if len(lines) == 2:
        lines = []  # no comparison in this result (a catch-up alone)
    if "catch_up_error" in result:
        lines.append(f"\ncatch-up failed: {result['catch_up_error']['error']}")
    if "catch_up" in result:
        c = result["catch_up"]
        lines.append("")
        lines.append("| catch-up of an empty replica (plugmq) | value |\n|---|---:|")
        lines.append(f"| messages held by the group | {c['messages']:,} |")
        lines.append(f"| start to `ha_zk.caught_up` (s) | {c['seconds']:.1f} |")
        lines.append(f"| msg/s | {c['msg_per_s']:,} |")
        size = f"{c['replica_bytes'] / 1e6:,.0f} MB"
        lines.append(f"| MB/s (the replica's data directory: {size}) | {c['mb_per_s']} |")
        lines.append(f"| fill: confirmed msg/s into the 2 live brokers | {c['fill_per_s']:,} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    cpus = Path("/proc/cpuinfo").read_text().count("processor\t:")
    rabbit = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"], capture_output=True, text=True
    ).stdout
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": cpus,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": rabbit,
        "plugmq_commit": commit,
        "command": " ".join(sys.argv),
    }


def parse() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="durable runs per side (alternating)")
    parser.add_argument("--duration", type=float, default=10.0, help="perf's measured window (s)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=100, help="message body bytes")
    parser.add_argument("--confirm-window", type=int, default=100)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20, help="failover kills per side (0: none)")
    parser.add_argument("--catch-up", action="store_true", help="also time a replica's catch-up")
    parser.add_argument("--catch-up-count", type=int, default=1_000_000)
    parser.add_argument(
        "--no-rabbitmq", action="store_true", help="plugmq's failover and catch-up only"
    )
    parser.add_argument("--bdb-sync", default="commit", help="plugmq's --bdb-sync")
    out = ROOT / "benchmarks/results/ha_zk_vs_quorum.json"
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--report", type=Path, help="print the tables of an earlier result")
    return parser.parse_args()


def run(args: argparse.Namespace, base: Path, result: dict[str, Any]) -> None:
    """Start the set-ups needed, measure into ``result`` (saved after every phase), stop them.

    RabbitMQ is started only for the durable runs and failover rounds (``--runs 0 --rounds 0
    --catch-up`` measures the catch-up alone). A failed catch-up is recorded in the result with
    the brokers' log tails instead of losing the figures measured before it.
    """
    plugmq, rabbit = PlugmqSide(base / "plugmq", args.bdb_sync), RabbitSide(base / "rabbitmq")
    compare = bool(args.runs or args.rounds) and not args.no_rabbitmq
    try:
        print("starting ZooKeeper and 3 plugmq brokers ...", flush=True)
        plugmq.start()
        if compare:
            print("starting 3 RabbitMQ nodes and clustering them ...", flush=True)
            rabbit.start()
        result["durable"] = []
        for number in range(args.runs if compare else 0):
            order = (plugmq, rabbit) if number % 2 == 0 else (rabbit, plugmq)
            for side in order:
                other = rabbit if side is plugmq else plugmq
                result["durable"].append(durable(side, other, args))
        save(args.out, result)
        result["failover"] = []
        for side in ((plugmq, rabbit) if compare else (plugmq,)) if args.rounds else ():
            result["failover"].append(failovers(side, args.rounds))
            save(args.out, result)
        if args.catch_up:
            rabbit.stop()  # idle beam.smp schedulers would only slow the catch-up down
            try:
                result["catch_up"] = catch_up(plugmq, args.catch_up_count)
            except (AMQPClientError, TimeoutError, RuntimeError, ExceptionGroup) as error:
                result["catch_up_error"] = {
                    "error": repr(error),
                    "logs": {str(b.log_path.name): b.tail(30) for b in plugmq.group.brokers},
                }
                print(f"catch-up failed: {error!r}", file=sys.stderr)
            save(args.out, result)
    finally:
        for side in (plugmq, rabbit):
            try:
                side.stop()
            except (OSError, RuntimeError, subprocess.SubprocessError) as error:
                # the other side must still be stopped: say what failed, go on
                print(f"stopping {side.name} failed: {error!r}", file=sys.stderr)


def save(out: Path, result: dict[str, Any]) -> None:
    """Write the result so far."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    """Run (or report) and print the tables."""
    args = parse()
    configure_logging("warning")  # the client's per-connection lines would drown the figures
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    result: dict[str, Any] = {
        "machine": machine(),
        "args": {key: str(value) for key, value in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="ha_zk_vs_quorum-") as tmp:
        run(args, Path(tmp), result)
    save(args.out, result)
    print(markdown(result))


if __name__ == "__main__":
    main()
