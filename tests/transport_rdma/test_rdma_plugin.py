"""The plugin's hooks and device checks on a host, which has no RDMA device (or no pyverbs).

Real RDMA runs in the lab VM: ``make test-rdma``.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from support.broker_process import BrokerProcess

from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq_transport_rdma import device, plugin
from plugmq_transport_rdma.dialer import RdmaDialer
from plugmq_transport_rdma.settings import RingSettings

PYVERBS = Path("/usr/lib/python3/dist-packages/pyverbs")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def config(**overrides: object) -> Config:
    """The plugin's flags at their defaults, with ``overrides``."""
    registry = OptionRegistry()
    plugin.plugmq_add_options(registry)
    return Config.defaults(registry, **overrides)


def test_plugmq_add_options_registers_rdma_flags() -> None:
    registry = OptionRegistry()
    plugin.plugmq_add_options(registry)
    names = {option.name for option in registry}
    assert {"rdma_port", "rdma_interface", "rdma_buffers", "rdma_buffer_size"} <= names


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"rdma_port": 70000}, "--rdma-port 70000"),
        ({"rdma_buffers": 1}, "--rdma-buffers 1"),
        ({"rdma_buffer_size": 16}, "--rdma-buffer-size 16"),
    ],
)
def test_plugmq_configure_rejects_bad_values(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plugin.plugmq_configure(config(**overrides))


def test_plugmq_listeners_is_empty_when_disabled() -> None:
    assert plugin.plugmq_listeners(config(rdma_port=-1)) == []


def test_plugmq_listeners_without_rdma_logs_why() -> None:
    if device.probe().available:
        pytest.skip("this host has an RDMA device")
    assert plugin.plugmq_listeners(config()) == []


def test_plugmq_dialer_serves_amqp_rdma_only() -> None:
    assert isinstance(plugin.plugmq_dialer("amqp+rdma"), RdmaDialer)
    assert plugin.plugmq_dialer("amqp") is None


@pytest.mark.skipif(device.probe().available, reason="this host has an RDMA device")
async def test_dial_without_rdma_is_a_clear_oserror() -> None:
    with pytest.raises(OSError, match="RDMA is unavailable") as caught:
        await RdmaDialer().dial("127.0.0.1", 5673)
    assert caught.value.errno == errno.ENODEV


def test_ring_memory_is_buffers_times_size_times_two() -> None:
    assert RingSettings(16, 16384).registered_bytes == 512 * 1024


def test_ipv4_from_roce_gid() -> None:
    assert device.ipv4_from_gid("0000:0000:0000:0000:0000:ffff:0a00:020f") == "10.0.2.15"
    assert device.ipv4_from_gid("fe80:0000:0000:0000:5054:00ff:fe12:3456") is None
    assert device.ipv4_from_gid("not a gid") is None


def test_pin_refusal_names_the_limit_to_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "memlock_limit", lambda: 64 * 1024)
    monkeypatch.setattr(device, "may_lock_unlimited", lambda: False)
    with pytest.raises(device.PinError) as caught:
        device.check_pinnable(512 * 1024, 0)
    message = str(caught.value)
    assert "ulimit -l" in message and "limits.conf" in message and "65536 bytes" in message
    monkeypatch.setattr(device, "may_lock_unlimited", lambda: True)
    device.check_pinnable(512 * 1024, 0)  # CAP_IPC_LOCK: no limit applies


def test_cap_ipc_lock_is_read_from_proc_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000004000\n")
    assert device.may_lock_unlimited(status)
    status.write_text("Name:\tx\nCapEff:\t0000000000000000\n")
    assert not device.may_lock_unlimited(status)


@pytest.mark.skipif(not PYVERBS.is_dir(), reason="python3-pyverbs is not installed on this host")
def test_probe_with_pyverbs_but_no_device_explains(tmp_path: Path) -> None:
    if device.probe().available:
        pytest.skip("this host has an RDMA device")
    (tmp_path / "pyverbs").symlink_to(PYVERBS)
    code = "from plugmq_transport_rdma import device; print(device.probe())"
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "get_device_list failed" in out or "no RDMA device" in out


@pytest.mark.skipif(
    device.probe().available, reason="this host has an RDMA device (see test_rdma_vm_broker)"
)
async def test_broker_starts_with_the_plugin_and_serves_tcp(broker: BrokerProcess) -> None:
    events = broker.events()
    unavailable = [event for event in events if event.get("event") == "rdma_unavailable"]
    assert unavailable and unavailable[0]["reason"]
    active = next(event for event in events if event.get("event") == "broker_active")
    assert "transport_rdma" in str(active["plugins"])
    stream = await trio.open_tcp_stream("127.0.0.1", broker.port)
    async with stream:
        await stream.send_all(AMQP_HEADER)
        reply = await stream.receive_some(4096)
    assert reply[:1] == b"\x01"  # a method frame: connection.start
