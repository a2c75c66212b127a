"""``plugmq ha status``: role, epoch, holder and lease age, from a broker or from the directory.

From a running master (``--broker URL``: the core's ``ha.status`` management command, whose
details come from the strategy's ``describe()``; ``plugmq stat ha`` shows the same), or, when no
broker serves (every member a standby, or the group down), straight from the lease file of a
shared data directory (``--data-dir DIR``): standbys refuse AMQP clients, so the file is the
one source that always answers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from plugmq.api import Admin
from plugmq.cli.admin import BrokerOption, JsonOption, TimeoutOption, fail
from plugmq.management.client import DEFAULT_TIMEOUT
from plugmq_ha_sharedfs import lease as lease_file
from plugmq_ha_sharedfs.directory import SharedDirectory
from plugmq_ha_sharedfs.lease import LeaseError

STASH_KEY = "ha_sharedfs"


def flatten(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The core's ``ha.status`` row (role, epoch, mode, details) as one flat view."""
    row = rows[0]
    return {"role": row["role"], "epoch": row["epoch"], "ha": row["mode"], **row["details"]}


def read_directory_status(data_dir: Path) -> dict[str, Any]:
    """The lease of a shared data directory, as ``plugmq ha status --data-dir`` shows it."""
    directory = SharedDirectory(data_dir)
    raw = lease_file.read_raw(directory.lease)
    if raw is None:
        return {"lease": None, "note": f"no lease in {directory.lease}: no master yet"}
    current = lease_file.parse(raw, directory.lease)
    return {
        "group": current.group,
        "epoch": current.epoch,
        "holder": current.holder.describe(),
        "holder_url": current.holder.url,
        "since": _clock(current.since),
        "renewed_at": _clock(current.renewed_at),
        "seconds_since_renewal_by_wall_clock": round(time.time() - current.renewed_at, 3),
        "lease_seconds": current.lease_seconds,
        "holds_master_lock": current.locked,
        "released": current.released,
        "members": directory.member_urls(),
    }


def _clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _show(result: dict[str, Any]) -> None:
    width = max(len(key) for key in result)
    for key, value in result.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        typer.echo(f"{key.ljust(width)}  {shown}")


def make_ha_app(admin: Admin) -> typer.Typer:
    """The ``plugmq ha`` command group."""
    app = typer.Typer(help="High availability (shared filesystem) status.", no_args_is_help=True)

    @app.command("status")
    def status(
        broker: BrokerOption = None,
        data_dir: Annotated[
            Path | None,
            typer.Option("--data-dir", help="Read the lease of this shared data directory."),
        ] = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Role, epoch, lease holder and lease age."""
        if data_dir is None:
            result = flatten(admin.request(broker, timeout, "ha.status"))
        else:
            try:
                result = read_directory_status(data_dir)
            except (LeaseError, OSError) as error:
                fail(str(error))
        if as_json:
            typer.echo(json.dumps(result, indent=1))
        else:
            _show(result)

    return app
