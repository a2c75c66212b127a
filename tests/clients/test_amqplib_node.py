"""Node's amqplib against a real broker process, driven through ``node/roundtrip.js``.

The script prints one JSON object of what it saw; the assertions are here. ``npm ci`` (or
``npm install`` without a lock file) runs once per session when ``node_modules`` is missing;
the tests are skipped only when node or npm are not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support.broker_process import BrokerProcess

NODE_DIR = Path(__file__).parent / "node"
INSTALL_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The node executable, with amqplib installed in ``tests/clients/node``."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the amqplib tests and are not installed")
    if not (NODE_DIR / "node_modules" / "amqplib").is_dir():
        command = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
        done = subprocess.run(
            [npm, command, "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
        assert done.returncode == 0, f"npm {command} failed:\n{done.stdout}\n{done.stderr}"
    return Path(node)


def run_script(node: Path, script: str, *args: str) -> dict:
    """Run a script from ``node/`` and return the JSON object it printed last."""
    done = subprocess.run(
        [str(node), script, *args],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_amqplib_confirm_publish_consume_ack(
    node_client: Path, shared_broker: BrokerProcess
) -> None:
    count = 25
    results = run_script(node_client, "roundtrip.js", shared_broker.url, str(count))
    assert results["serverProduct"] == "plugmq"
    assert results["queue"].startswith("amq.gen-")
    assert results["confirmed"] == count
    assert results["returned"] == {"body": "bounce", "replyCode": 312}
    assert [m["body"] for m in results["received"]] == [f"message {n}" for n in range(count)]
    assert [m["n"] for m in results["received"]] == list(range(count))
    assert {m["contentType"] for m in results["received"]} == {"text/plain"}
    assert not any(m["redelivered"] for m in results["received"])
    assert results["consumerTag"].startswith("amq.ctag-")
    assert results["remaining"] == 0
    assert results["cancelledByBroker"] is True
    assert results["afterCancel"] is True


def test_amqplib_publisher_racing_a_channel_error_keeps_its_connection(
    node_client: Path, shared_broker: BrokerProcess
) -> None:
    # Spec 2.3.5, as RabbitMQ: after channel.close (404, no such exchange) the broker drops
    # the publishes already on the wire behind the failing one; the connection stays open.
    results = run_script(node_client, "racing.js", shared_broker.url, "50")
    assert results["channelError"]["code"] == 404
    assert "no-such-exchange" in results["channelError"]["message"]
    assert results["connectionErrors"] == []
    assert results["afterRace"] == "after the race"
    assert results["newChannelQueue"] is True
