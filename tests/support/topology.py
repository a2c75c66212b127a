"""The production topology of issue 14, as real processes: a 3-server ZooKeeper ensemble and
9 brokers in 3 ``--ha zookeeper`` groups (brokerName1..3) whose masters form a network.

Each group is an :class:`~support.zk_group.HAGroup` on its own ``--zk-path
/plugmq/groups/<group>`` of the one ensemble; every member gets a loopback port of its own up
front and keeps it across restarts, so a group's URL list (what discovery announces and what
links and clients fail over through) never changes, as in an operator's configuration.
Members of a group share ``--ha-group`` and ``--broker-id`` (the group's name): to the network a
group is one broker, whichever member is its master.

Readiness and mastership come from the brokers' own log events (never a sleep); kill -9 hits
the broker process itself. Everything :meth:`Topology.start` starts, :meth:`Topology.stop`
stops. The end-to-end test, the benchmark and ``examples/topology.py`` all use this class.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pika

from support.broker_process import BrokerProcess
from support.federation import plugmq_json
from support.multicast import LOOPBACK, free_udp_port
from support.sharedfs import SharedFSGroup
from support.zk_group import HAGroup, replication_port
from support.zookeeper import ZooKeeperEnsemble

GROUP_NAMES = ("brokerName1", "brokerName2", "brokerName3")
ZK_ROOT = "/plugmq/groups"

#: Discovery through the ensemble, and the network of masters (issue 14's interface).
ZK_NETWORK = ("--discovery", "zookeeper", "--network", "dynamic")


def network_available() -> bool:
    """Whether the discovery plugin (and so ``--discovery``/``--network``) is installed."""
    return importlib.util.find_spec("plugmq_discovery") is not None


@dataclass(frozen=True)
class Picture:
    """The network as the admin commands show it: per group (master ``host:port``, standbys'
    ``host:port``) from ``stat ha`` and from ``route map``, and the (destination, source) groups
    of every network link."""

    stat_ha: dict[str, tuple[str, set[str]]]
    route_map: dict[str, tuple[str, set[str]]]
    links: set[tuple[str, str]]


@dataclass
class TopologyGroup:
    """One HA group of the topology: its name, its members, and who is master."""

    name: str
    members: HAGroup
    #: Index of the member last seen promoted (None before the first election).
    master_index: int | None = None

    @property
    def brokers(self) -> list[BrokerProcess]:
        """The group's broker processes, in member order."""
        return self.members.brokers

    @property
    def urls(self) -> list[str]:
        """Every member's ``amqp://guest:guest@127.0.0.1:PORT/`` (the group's failover list)."""
        return [broker.url for broker in self.brokers]

    def parameters(self) -> list[pika.ConnectionParameters]:
        """pika's failover list over the members (a replica refuses; pika tries the next)."""
        options = {"connection_attempts": 1, "socket_timeout": 2, "blocked_connection_timeout": 10}
        return [pika.ConnectionParameters("127.0.0.1", b.port, **options) for b in self.brokers]

    @property
    def master(self) -> BrokerProcess:
        """The broker last seen promoted (call :meth:`wait_master` first)."""
        assert self.master_index is not None, "no master seen yet: wait_master() first"
        return self.brokers[self.master_index]

    def wait_master(self, timeout: float = 90.0) -> BrokerProcess:
        """Wait until a live member logs ``ha_zk.promoted`` (in its current life)."""
        alive = tuple(i for i, broker in enumerate(self.brokers) if broker.alive)
        self.master_index = self.members.master(timeout=timeout, among=alive)
        return self.master

    def start(self, *indexes: int) -> None:
        """Start these members (all by default) one after the other, each until it listens
        (as ha_zk's own tests do; the groups of a topology start at once)."""
        for index in indexes or range(len(self.brokers)):
            self.members.start(index)

    def kill_master(self) -> tuple[BrokerProcess, float]:
        """kill -9 the master process; return it and the ``time.monotonic()`` of the kill."""
        dead = self.master
        dead.kill()
        killed_at = time.monotonic()
        self.master_index = None
        return dead, killed_at

    def kill_all(self) -> None:
        """kill -9 every member (the whole group down)."""
        for broker in self.brokers:
            broker.kill()
        self.master_index = None

    def restart_dead(self) -> None:
        """Start every member that is not running, on its old port and data directory."""
        dead = tuple(i for i, broker in enumerate(self.brokers) if not broker.alive)
        if dead:
            self.start(*dead)


@dataclass
class SharedFSTopologyGroup(TopologyGroup):
    """A ``--ha sharedfs`` group of the multicast topology: the first member starts as master;
    a standby takes over when the master dies (the lock on the shared directory)."""

    members: SharedFSGroup
    #: The epoch of the last master seen.
    epoch: int = 0

    def wait_master(self, timeout: float = 60.0) -> BrokerProcess:
        """Wait until a member logs ``broker_active`` with a newer epoch than the last seen."""
        broker, event = self.members.wait_master(after_epoch=self.epoch, timeout=timeout)
        self.epoch = event["epoch"]
        self.master_index = self.brokers.index(broker)
        return broker

    def start(self, *indexes: int) -> None:
        """Start the group (the first member as master), or these members as standbys."""
        if not indexes:
            self.members.start()
            return
        for index in indexes:
            self.brokers[index].start(ready_event="broker_listening")


class Network:
    """What every topology of HA groups offers the tests: its groups, their masters, and the
    network as ``stat ha`` and ``route map`` show it."""

    groups: dict[str, TopologyGroup]

    @property
    def brokers(self) -> list[BrokerProcess]:
        """All broker processes, group by group."""
        return [broker for group in self.groups.values() for broker in group.brokers]

    def wait_masters(self, timeout: float = 90.0) -> dict[str, BrokerProcess]:
        """Each group's master, once every group has one."""
        return {name: group.wait_master(timeout) for name, group in self.groups.items()}

    def picture(self, url: str) -> Picture:
        """What ``plugmq stat ha`` and ``plugmq route map`` asked of ``url`` show."""
        by_stat: dict[str, tuple[str, set[str]]] = {}
        for row in plugmq_json("stat", "ha", "--broker", url):
            if row["role"] == "master":  # the asked broker's own group
                master = _address(row["listening"][0])
                urls = row["details"]["group_urls"]
                by_stat[row["group"]] = (master, {_address(u) for u in urls} - {master})
            elif row["role"] == "master (discovered)":
                standbys = row["details"].get("standbys", [])
                by_stat[row["group"]] = (_address(row["listening"][0]), _addresses(standbys))
        drawn = plugmq_json("route", "map", url)
        by_map = {
            g["group"]: (_address(g["master"]), _addresses(g["standbys"])) for g in drawn["groups"]
        }
        links = {(r["destination"], r["source"]) for r in drawn["routes"] if r["group"]}
        return Picture(by_stat, by_map, links)

    def expected_picture(self) -> Picture:
        """Every group with the master last seen and the other members as standbys, and a
        network link from every group to every other."""
        groups = {}
        for name, group in self.groups.items():
            master = f"127.0.0.1:{group.master.port}"
            groups[name] = (master, _addresses(group.urls) - {master})
        pairs = {(a, b) for a in self.groups for b in self.groups if a != b}
        return Picture(groups, groups, pairs)

    def wait_network(self, asking: str | None = None, timeout: float = 60.0) -> None:
        """Wait until ``stat ha`` and ``route map`` asked of group ``asking``'s master (the
        first group's by default) show :meth:`expected_picture`: discovery and the network's
        routes are in place; raise naming the difference otherwise."""
        url = self.groups[asking or next(iter(self.groups))].master.url
        wanted = self.expected_picture()
        deadline = time.monotonic() + timeout
        while (shown := self.picture(url)) != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the network does not show as wanted:\n{wanted}\n{shown}")
            time.sleep(0.5)

    def start_groups(self) -> None:
        """Start every group at once (each its members one after the other); wait until each
        group has a master."""
        with ThreadPoolExecutor(max_workers=len(self.groups)) as pool:
            list(pool.map(lambda group: group.start(), self.groups.values()))
        self.wait_masters()

    def stop_brokers(self, grace: float = 0.0) -> None:
        """SIGTERM every broker and give it up to ``grace`` seconds for a clean exit, all at
        once (0: kill -9 at once, as tests do: a clean stop is not under test here)."""
        with ThreadPoolExecutor(max_workers=len(self.brokers)) as pool:
            if grace > 0:
                list(pool.map(lambda broker: broker.stop(grace), self.brokers))
            else:
                list(pool.map(BrokerProcess.kill, self.brokers))

    def masters(self) -> dict[str, BrokerProcess]:
        """The masters last seen (after :meth:`start` or :meth:`wait_masters`)."""
        return {name: group.master for name, group in self.groups.items()}


@dataclass
class Topology(Network):
    """The ensemble and the groups. ``network_args`` are given to every broker (discovery and
    ``--network dynamic`` by default, when installed); ``extra`` too (after HAGroup's flags:
    the last value of a flag counts)."""

    directory: Path
    group_names: tuple[str, ...] = GROUP_NAMES
    network_args: tuple[str, ...] | None = None
    #: fsync at every commit (HAGroup's tests use nosync): a whole group killed at once must
    #: keep what its quorum acknowledged, and no replica has it on disk otherwise.
    extra: tuple[str, ...] = ("--bdb-sync", "commit")
    zookeeper: ZooKeeperEnsemble = field(init=False)
    groups: dict[str, TopologyGroup] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.network_args is None:
            self.network_args = ZK_NETWORK if network_available() else ()
        self.zookeeper = ZooKeeperEnsemble(self.directory / "zookeeper", size=3)
        members = {name: self._members(name) for name in self.group_names}
        taken = {int(_flag(b, "--replication-address").rsplit(":", 1)[1])
                 for group in members.values() for b in group.brokers}  # fmt: skip
        ports = _broker_ports(3 * len(self.group_names), self.zookeeper, taken)
        for number, (name, group) in enumerate(members.items()):
            self.groups[name] = self._group(name, group, ports[3 * number : 3 * number + 3])

    def _members(self, name: str) -> HAGroup:
        (self.directory / name).mkdir(parents=True, exist_ok=True)
        return HAGroup(
            self.directory / name,
            self.zookeeper.hosts,
            f"{ZK_ROOT}/{name}",
            size=3,
            extra=("--ha-group", name, "--broker-id", name, *self.network_args, *self.extra),
        )

    def _group(self, name: str, members: HAGroup, ports: list[int]) -> TopologyGroup:
        for broker, port in zip(members.brokers, ports, strict=True):
            # The broker takes the last --port given (BrokerProcess passes --port 0 first).
            broker.port = port
            broker.args += ["--port", str(port), "--ha-advertise-url", f"amqp://127.0.0.1:{port}/"]
        return TopologyGroup(name, members)

    def start(self) -> Topology:
        """Start the ensemble, then every broker at once; wait until each group has a master."""
        self.zookeeper.start()
        self.start_groups()
        return self

    def stop(self, grace: float = 0.0) -> None:
        """Stop every broker (:meth:`Network.stop_brokers`), then the ensemble."""
        self.stop_brokers(grace)
        self.zookeeper.stop()


def _broker_ports(count: int, zookeeper: ZooKeeperEnsemble | None, taken: set[int]) -> list[int]:
    """``count`` distinct free loopback ports below the kernel's ephemeral range (a broker
    restarted on its old port must not find it taken by some client's outgoing connection),
    none of ``taken`` or those the ensemble was given."""
    servers = zookeeper.servers if zookeeper is not None else []
    ports = taken | {s.client_port for s in servers}
    ports |= {port for s in servers for port in s.peer_ports}
    chosen: list[int] = []
    while len(chosen) < count:
        port = replication_port()
        if port not in ports:
            ports.add(port)
            chosen.append(port)
    return chosen


def _flag(broker: BrokerProcess, name: str) -> str:
    """The value of flag ``name`` in ``broker``'s arguments."""
    return broker.args[broker.args.index(name) + 1]


def _address(url: str) -> str:
    """``host:port`` of a URL, with or without credentials."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def _addresses(urls: list[str]) -> set[str]:
    return {_address(url) for url in urls}


@dataclass
class MulticastTopology(Network):
    """Groups of ``--ha sharedfs`` brokers (each group on its own shared directory) whose masters
    find each other by UDP multicast on loopback (a port of this topology's own, so topologies
    running at once never hear each other) and form a ``--network dynamic`` network."""

    directory: Path
    group_names: tuple[str, ...] = GROUP_NAMES
    size: int = 2
    extra: tuple[str, ...] = ()
    groups: dict[str, TopologyGroup] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        network = ("--discovery", "multicast",
                   "--discovery-multicast", f"239.255.77.77:{free_udp_port()}",
                   "--discovery-interface", LOOPBACK, "--discovery-interval", "0.3",
                   "--network", "dynamic")  # fmt: skip
        ports = iter(_broker_ports(self.size * len(self.group_names), None, set()))
        for name in self.group_names:
            (self.directory / name).mkdir(parents=True, exist_ok=True)
            extra = (*network, "--broker-id", name, *self.extra)
            members = SharedFSGroup(self.directory / name, self.size, group=name, extra=extra)
            for broker in members.brokers:
                _move(broker, next(ports))
            self.groups[name] = SharedFSTopologyGroup(name, members)

    def start(self) -> MulticastTopology:
        """Start every group at once; wait until each has a master."""
        self.start_groups()
        return self

    def stop(self, grace: float = 0.0) -> None:
        """Stop every broker (:meth:`Network.stop_brokers`)."""
        self.stop_brokers(grace)


def _move(broker: BrokerProcess, port: int) -> None:
    """Have ``broker`` (not started) listen on and advertise ``port`` instead."""
    args = broker.args
    args[args.index("--port") + 1] = str(port)
    args[args.index("--ha-advertise-url") + 1] = f"amqp://127.0.0.1:{port}/"
    broker.port = port
