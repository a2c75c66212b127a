"""A replicated store can learn its peers after it opened (real Berkeley DB environments).

The first broker of a new ha_zk group registers before any other and opens its environment
knowing no peer; if another broker wins the election it must still be able to join that master.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.zk_group import replication_port

from plugmq.store import StoreError
from plugmq_store_bdb.replication import ReplicationSettings
from plugmq_store_bdb.store import BDBStore


def _store(home: Path, port: int) -> BDBStore:
    settings = ReplicationSettings(local=("127.0.0.1", port), ack_timeout=1.0)
    store = BDBStore(home, sync="nosync", replication=settings)
    store.open()
    return store


def test_a_store_opened_without_peers_joins_a_master_learnt_later(tmp_path: Path) -> None:
    master_port, late_port = replication_port(), replication_port()
    master = _store(tmp_path / "master", master_port)
    late = _store(tmp_path / "late", late_port)
    try:
        master.start_master()
        with pytest.raises(StoreError, match="cannot join the replication group"):
            late.start_replica(time.monotonic() + 0.5)  # no helper known: it cannot

        late.add_replication_peers((("127.0.0.1", master_port), ("127.0.0.1", late_port)))
        assert late.replicator is not None
        assert late.replicator.peers == (("127.0.0.1", master_port),)  # itself never a peer
        late.start_replica(time.monotonic() + 10)

        assert late.replicator.caught_up.wait(10), "the late store never caught up"
        deadline = time.monotonic() + 10
        while not any(site["connected"] for site in master.replication_sites()):
            assert time.monotonic() < deadline, master.replication_sites()
            time.sleep(0.05)
        assert [site["address"] for site in master.replication_sites()] == [
            f"127.0.0.1:{late_port}"
        ]
    finally:
        late.close()
        master.close()
