"""``plugmq broker`` as a user runs it: flags, config file, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pika
from support.broker_process import broker_process


def plugmq(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugmq", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert text in result.stderr, result.stderr


def test_help_lists_flags_of_every_installed_plugin() -> None:
    result = plugmq("broker", "--help")
    assert result.returncode == 0
    for flag in ("--port", "--data-dir", "--bdb-sync", "--load-module", "--log-json"):
        assert flag in result.stdout


def test_unknown_plugin_is_one_clear_error() -> None:
    result = plugmq("broker", "--load-module", "no_such_plugin")
    assert_one_line_error(result, "plugmq: error: unknown plugin 'no_such_plugin'")
    assert result.returncode == 2


def test_bad_flag_value_is_a_usage_error() -> None:
    result = plugmq("broker", "--port", "not-a-number")
    assert_one_line_error(result, "Invalid value for '--port'")
    assert result.returncode == 2


def test_out_of_range_value_is_rejected_by_configure() -> None:
    result = plugmq("broker", "--store", "memory", "--frame-max", "100")
    assert_one_line_error(result, "--frame-max 100 must be between 4096 and 16777216")


def test_without_a_transport_the_broker_refuses_to_start() -> None:
    result = plugmq("broker", "--no-autoload")
    assert_one_line_error(result, "no transport plugin provides a listener")


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    first = broker_process(tmp_path, "--store", "memory").start()
    try:
        result = plugmq(
            "broker",
            "--store",
            "memory",
            "--interface",
            "127.0.0.1",
            "--port",
            str(first.port),
            "--data-dir",
            str(tmp_path / "second"),
        )
        assert_one_line_error(result, f"cannot listen on 127.0.0.1:{first.port}")
    finally:
        first.stop()


def test_config_file_sets_values_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "plugmq.toml"
    config.write_text('store = "memory"\nheartbeat = 7\ncluster-name = "from-file"\n')
    process = broker_process(tmp_path, "--config", str(config), "--heartbeat", "9").start()
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", process.port))
        properties = connection._impl.server_properties
        heartbeat = connection._impl.params.heartbeat
        connection.close()
    finally:
        assert process.stop() == 0
    assert properties["cluster_name"] == b"from-file" or properties["cluster_name"] == "from-file"
    assert heartbeat == 9


def test_unknown_key_in_config_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "plugmq.toml"
    config.write_text("no_such_option = 1\n")
    result = plugmq("broker", "--config", str(config))
    assert_one_line_error(result, "unknown option 'no_such_option'")


def test_sigterm_closes_clients_with_320(tmp_path: Path) -> None:
    process = broker_process(tmp_path, "--store", "memory").start()
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", process.port))
    try:
        assert process.stop() == 0
        try:
            connection.process_data_events(time_limit=2)
            raise AssertionError("the connection should have been closed by the broker")
        except pika.exceptions.ConnectionClosedByBroker as closed:
            assert closed.reply_code == 320
    finally:
        if connection.is_open:
            connection.close()
