"""``plugmq plugins``: what is loaded and which hooks each plugin implements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "random_exchange.py"


def test_plugins_json_lists_installed_and_loaded_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plugmq", "plugins", "--json", "--load-module", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    plugins = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert "plugmq_listeners" in plugins["transport_tcp"]["hooks"]
    assert "plugmq_store" in plugins["store_bdb"]["hooks"]
    example = plugins["plugmq_file_plugin_random_exchange"]
    assert "plugmq_exchange_types" in example["hooks"]
