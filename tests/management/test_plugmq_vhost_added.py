"""The ``plugmq_vhost_added`` and ``plugmq_vhost_deleted`` hooks, and what management does
with the first: every vhost, old or new, gets its ``plugmq.management`` queue."""

from __future__ import annotations

from pathlib import Path

from support.admin_cli import cli_json, cli_ok
from support.broker_process import broker_process

PLUGIN = Path(__file__).parent / "plugins" / "vhost_events.py"


def test_vhost_hooks_fire_and_new_vhosts_are_managed(tmp_path: Path) -> None:
    broker = broker_process(tmp_path, "--load-module", str(PLUGIN)).start()
    try:
        cli_ok(broker.url, "vhost", "add", "/a")
        queues = cli_json(broker.url, "config", "list", "queues", "--vhost", "/a")
        assert [q["name"] for q in queues] == ["plugmq.management"]
        broker.kill()
        broker.restart()  # /a is recovered from the store, before the service starts
        queues = cli_json(broker.url, "config", "list", "queues", "--vhost", "/a")
        assert [q["name"] for q in queues] == ["plugmq.management"]
        cli_ok(broker.url, "vhost", "delete", "/a")
    finally:
        broker.stop()
    added = [e["vhost"] for e in broker.events() if e.get("event") == "test_vhost_added"]
    assert added == ["/", "/a", "/a", "/"]  # recovery rebuilds /a before start-up adds /
    deleted = [e for e in broker.events() if e.get("event") == "test_vhost_deleted"]
    assert [(e["vhost"], e["present"]) for e in deleted] == [("/a", False)]
