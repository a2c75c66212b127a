"""Issue 14 end to end: 3 ``--ha zookeeper`` groups of 3 brokers on one 3-server ZooKeeper
ensemble, their masters a network (discovery through ZooKeeper, ``--network dynamic``).

Real processes and real pika clients (tests/support/topology.py, topology_load.py): a confirmed
publisher on every group, an acking consumer in every group bound to ``amq.topic``; every
confirmed persistent message must reach each consumer exactly once (ledgers of design.md
"Fault testing"), through a kill -9 of each group's master in turn and a whole group down.
"""

from __future__ import annotations

import time

import pytest
from support import zookeeper
from support.topology import Topology, network_available
from support.topology_load import MeshLoad

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not zookeeper.available(), reason="zookeeper not installed"),
]

#: New messages every consumer must get from every group after each step.
STEP = 30


@pytest.fixture
def topology(tmp_path):
    """The 9 brokers and the ensemble (not started); all stopped at the end."""
    brokers = Topology(tmp_path)
    yield brokers
    brokers.stop()


def _step(what: str) -> None:
    """Progress on stdout (shown with -s; kept in the failure report otherwise)."""
    print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)


def _all_pairs_flow(load: MeshLoad, consumers, origins, more: int = STEP) -> None:
    for consumer in consumers:
        for origin in origins:
            load.wait_received(consumer, origin, more)


@pytest.mark.timeout(420)
def test_three_groups_exactly_once_through_master_kills_and_a_group_down(topology) -> None:
    topology.start()
    if not network_available():
        topology.link_statically()
    names = list(topology.groups)
    load = MeshLoad(topology)
    try:
        load.start_consumers()
        _step(f"mesh carries every pair after {load.wait_mesh():.1f}s")
        load.start_publishers()
        _all_pairs_flow(load, names, names)
        _step("steady state")

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
            group.restart_dead()

        down, group = names[-1], topology.groups[names[-1]]
        load.fault()
        group.kill_all()
        _step(f"{down} down")
        alive = names[:-1]
        _all_pairs_flow(load, alive, alive)
        group.restart_dead()
        group.wait_master()
        load.recovered()
        _all_pairs_flow(load, names, names)
    finally:
        load.stop_publishers()
    load.drain()
    load.stop()
    reports = load.check()
    print({name: report for name, report in reports.items()})
    for report in reports.values():
        assert report.confirmed > 10 * STEP
