"""Fixtures of the ha_zk tests: one real ZooKeeper per session, a group path per test.

kazoo's harness style: the server is shared (starting one costs ~1 s), each test gets its own
``--zk-path`` so groups never see each other. A 3-server ensemble is started only by the tests
that need one (``zk_ensemble``). Brokers are real processes (``HAGroup``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import zookeeper
from support.zk_group import HAGroup

pytestmark = pytest.mark.skipif(not zookeeper.available(), reason="zookeeper not installed")


@pytest.fixture
def zk_ensemble(tmp_path: Path) -> Iterator[zookeeper.ZooKeeperEnsemble]:
    """A 3-server ZooKeeper ensemble of this test's own."""
    ensemble = zookeeper.ZooKeeperEnsemble(tmp_path / "zookeeper", size=3).start()
    yield ensemble
    ensemble.stop()


@pytest.fixture
def zk_path() -> str:
    """A group path of this test's own (the chroot of kazoo's harness)."""
    return f"/plugmq/test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def group(
    tmp_path: Path, zk_server: zookeeper.ZooKeeperEnsemble, zk_path: str
) -> Iterator[HAGroup]:
    """Three brokers (not started) of one group on the session's ZooKeeper."""
    brokers = HAGroup(tmp_path, zk_server.hosts, zk_path, size=3)
    yield brokers
    brokers.stop()
