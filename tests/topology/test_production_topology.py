"""Issue 14 end to end: 3 ``--ha zookeeper`` groups of 3 brokers on one 3-server ZooKeeper
ensemble, their masters a network (``--discovery zookeeper --network dynamic``).

Real processes and real pika clients (tests/support/topology.py, topology_load.py): a paced
confirmed publisher on every group, an acking consumer in every group bound to ``amq.topic``;
every confirmed persistent message must reach each consumer exactly once (a ledger per consumer,
design.md "Fault testing"), through a kill -9 of each group's master in turn and a whole group
down; ``plugmq stat ha`` and ``plugmq route map`` against a master show the whole network.

A smaller variant runs the same load over three ``--ha sharedfs`` groups of two brokers whose
masters find each other by UDP multicast on loopback (``--discovery multicast``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pytest
from support import zookeeper
from support.federation import manage, plugmq_json
from support.topology import MulticastTopology, Topology, network_available
from support.topology_load import MeshLoad

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not zookeeper.available(), reason="zookeeper not installed"),
    pytest.mark.skipif(not network_available(), reason="plugmq-discovery not installed"),
]

#: New messages every consumer must get from every group after each step.
STEP = 20
#: Messages per second each group's publisher sends: what the loaded 2-core CI machine (9
#: brokers, 3 ZooKeeper servers, other suites beside) carries over the links with room to spare.
RATE = 20


@pytest.fixture
def topology(tmp_path):
    """The 9 brokers and the ensemble (not started); all stopped at the end."""
    brokers = Topology(tmp_path)
    yield brokers
    brokers.stop()


def _step(what: str) -> None:
    """Progress on stdout (shown with -s, and in the report of a failure)."""
    print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def _all_pairs_flow(
    load: MeshLoad, consumers: Iterable[str], origins: Iterable[str], more: int = STEP
) -> None:
    origins = list(origins)
    for consumer in consumers:
        for origin in origins:
            load.wait_received(consumer, origin, more)


def _waiting_for(broker, group: str) -> int:
    """Messages in ``broker``'s queues that ``group``'s network links drain."""
    queues = manage(broker, "queue.list")
    return sum(q["messages"] for q in queues if q["name"].startswith(f"federation.{group}."))


@pytest.mark.timeout(480)
def test_three_groups_exactly_once_through_master_kills_and_a_group_down(topology) -> None:
    topology.start()
    names = list(topology.groups)
    _step("9 brokers up, every group has a master")
    load = MeshLoad(topology, rate=RATE)
    try:
        load.start_consumers()
        _step(f"the network carries every pair after {load.wait_mesh():.1f}s")
        load.start_publishers()
        _all_pairs_flow(load, names, names)
        topology.wait_network(asking=names[0])
        _assert_standby_maps_like_its_master(topology.groups[names[0]])
        _step("steady state; stat ha and route map show the network")

        for name, group in topology.groups.items():
            load.fault()
            dead, _ = group.kill_master()
            _step(f"killed {name}'s master")
            others = [other for other in names if other != name]
            # The other groups keep serving each other while this one elects a master.
            _all_pairs_flow(load, others, others, more=5)
            assert group.wait_master() is not dead
            load.recovered()
            _step(f"{name} has a new master")
            _all_pairs_flow(load, names, names)
            _step("the network re-formed: every pair flows")
            group.restart_dead()
        topology.wait_network(asking=names[1])

        down, group = names[-1], topology.groups[names[-1]]
        load.fault()
        group.kill_all()
        _step(f"{down} down")
        alive = names[:-1]
        _all_pairs_flow(load, alive, alive)
        for name in alive:  # what is for the dead group's consumer waits on this side
            assert _waiting_for(topology.groups[name].master, down) > 0, name
        _step("the others serve each other; messages for the dead group wait")
        group.restart_dead()
        group.wait_master()
        load.recovered()
        _step(f"{down} back")
        _all_pairs_flow(load, names, names)
    finally:
        load.stop_publishers()
    load.drain()
    _step("drained")
    load.stop()
    reports = load.check()
    print(reports, f"redelivered after a consumer's master died: {load.redelivered_copies}")
    for report in reports.values():
        assert report.confirmed > 10 * STEP


@pytest.fixture
def multicast_topology(tmp_path):
    """Three sharedfs groups of two (not started); all stopped at the end."""
    brokers = MulticastTopology(tmp_path)
    yield brokers
    brokers.stop()


@pytest.mark.timeout(300)
def test_multicast_discovery_of_sharedfs_groups_through_master_kills(multicast_topology) -> None:
    topology = multicast_topology
    topology.start()
    names = list(topology.groups)
    _step("6 brokers up, every group has a master")
    load = MeshLoad(topology, rate=RATE)
    try:
        load.start_consumers()
        _step(f"the network carries every pair after {load.wait_mesh():.1f}s")
        load.start_publishers()
        _all_pairs_flow(load, names, names)
        topology.wait_network()
        _step("steady state; stat ha and route map show the network")
        for name, group in topology.groups.items():
            load.fault()
            dead, _ = group.kill_master()
            assert group.wait_master() is not dead
            load.recovered()
            _step(f"{name}'s standby took over")
            _all_pairs_flow(load, names, names)
            group.restart_dead()
        topology.wait_network(asking=names[-1])
    finally:
        load.stop_publishers()
    load.drain()
    load.stop()
    reports = load.check()
    print(reports, f"redelivered after a consumer's master died: {load.redelivered_copies}")
    for report in reports.values():
        assert report.confirmed > 4 * STEP


def _assert_standby_maps_like_its_master(group) -> None:
    """``route map`` asked of a standby is its master's map, each route once (the standby
    redirects the walk to its master, which is then reached again by its own address)."""
    standby = next(broker for broker in group.brokers if broker is not group.master)

    def routes(url: str) -> list[str]:
        return sorted(
            json.dumps(r, sort_keys=True) for r in plugmq_json("route", "map", url)["routes"]
        )

    assert routes(standby.url) == routes(group.master.url)
