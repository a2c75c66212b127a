"""``plugmq ha status``: from the master (``ha.status``) and from the shared directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.admin_cli import cli_json
from support.sharedfs import SharedFSGroup


@pytest.mark.timeout(60)
def test_status_from_the_master_and_from_the_directory(tmp_path: Path) -> None:
    group = SharedFSGroup(tmp_path, size=2)
    master, standby = group.start(), group.brokers[1]
    try:
        standby.wait_event("ha_standby_waiting")
        urls = [f"amqp://guest:guest@127.0.0.1:{b.port}/" for b in group.brokers]
        status = cli_json(urls[::-1], "ha", "status")  # the standby first: a redirect
        assert status["role"] == "master" and status["epoch"] == 1
        assert status["ha"] == "sharedfs" and status["group"] == "test-group"
        assert status["holder_url"] == f"amqp://127.0.0.1:{master.port}/"
        assert status["holds_master_lock"] is True
        assert 0 <= status["lease_age"] < group.lease and status["lease_valid_for"] > 0

        # Given only the standby, the client follows its redirect to the master.
        redirected = cli_json(urls[1], "ha", "status")
        assert redirected["role"] == "master"
        assert redirected["holder_url"] == f"amqp://127.0.0.1:{master.port}/"

        done = subprocess.run(
            [sys.executable, "-m", "plugmq", "ha", "status", "--json", "--data-dir",
             str(group.data_dir)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        lease = json.loads(done.stdout)
        assert lease["holder_url"] == f"amqp://127.0.0.1:{master.port}/"
        assert lease["epoch"] == 1 and lease["released"] is False
        assert len(lease["members"]) == 2
    finally:
        group.stop()
