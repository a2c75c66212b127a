"""The ``plugmq_management_commands`` hook: a plugin's commands are served like built-ins."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess, broker_process

from plugmq.management.client import ManagementError, management_client

PLUGIN = Path(__file__).parent / "plugins" / "echo_command.py"


@pytest.fixture
def plugin_broker(tmp_path: Path):
    process = broker_process(tmp_path, "--store", "memory", "--load-module", str(PLUGIN)).start()
    yield process
    process.stop()


async def test_plugin_commands_run_with_context_and_errors(plugin_broker: BrokerProcess) -> None:
    async with management_client(plugin_broker.url) as admin:
        assert await admin.call("test.echo", say="hi") == {
            "user": "guest",
            "vhost": "/",
            "said": "hi",
        }
        with pytest.raises(ManagementError, match="missing argument 'say'"):
            await admin.call("test.echo")
        with pytest.raises(ManagementError, match="refused on purpose"):
            await admin.call("test.refuse")
        with pytest.raises(ManagementError, match="internal error: RuntimeError: boom"):
            await admin.call("test.crash")
        assert await admin.call("test.echo", say="still serving") == {
            "user": "guest",
            "vhost": "/",
            "said": "still serving",
        }
    crashed = [e for e in plugin_broker.events() if e.get("event") == "management_command_crashed"]
    assert len(crashed) == 1 and "RuntimeError: boom" in crashed[0]["exception"]


def test_a_command_name_registered_twice_stops_the_broker(tmp_path: Path) -> None:
    again = tmp_path / "echo_again.py"
    shutil.copy(PLUGIN, again)
    process = broker_process(
        tmp_path, "--store", "memory", "--load-module", str(PLUGIN), "--load-module", str(again)
    )
    duplicate = r"management command 'test\.echo' is registered by both"
    with pytest.raises(RuntimeError, match=duplicate):
        process.start()
    process.kill()
