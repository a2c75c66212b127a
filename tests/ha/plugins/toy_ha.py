"""A toy HA strategy for the contract tests: signals move the broker between roles.

Loaded with ``--load-module tests/ha/plugins/toy_ha.py --ha toy``. The broker starts as a
standby that listens and refuses every client with a redirect naming ``--toy-master-url``;
SIGUSR1 promotes it (epoch + 1), SIGUSR2 fences it (it keeps listening and redirecting), the
way a lock or an election would. A master service logs when it starts and stops so the test
can check that a second promotion does not start anything twice. Imports only the public
contract.

For failover groups (tests/support/failover_group.py) ``--toy-group-file PATH`` names a JSON
file ``{"master": URL, "members": [URL, ...]}`` that the test harness rewrites as it starts
members and moves mastership: a standby then redirects to its ``master`` and the master
advertises its ``members`` as ``cluster_urls``; fencing closes clients with a text naming the
``master``. The file is read per connection (a toy: a real strategy knows the group from its
lock or election).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import structlog
import trio

from plugmq.api import (
    BrokerAPI,
    Config,
    ConnectionInfo,
    ConnectionRefusal,
    OptionRegistry,
    Role,
    Service,
    hookimpl,
)
from plugmq.client.urls import master_redirect_text

log = structlog.get_logger("toy_ha")


class ToyHA:
    """Standby until SIGUSR1; SIGUSR2 fences; each promotion is a new epoch."""

    name = "toy"

    def __init__(self, master_url: str) -> None:
        self.master_url = master_url
        self.promotions = 0

    async def run(self, broker: BrokerAPI, task_status: trio.TaskStatus[None]) -> None:
        """Wait as a redirecting standby; follow the signals."""
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
            await broker.become(Role.STANDBY)
            await broker.start_service(_standby_watch)
            await broker.serve_clients()
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    self.promotions += 1
                    await broker.promote(epoch=self.promotions)
                else:
                    await broker.fence(_fence_reason(broker.config), keep_listening=True)
                    await broker.serve_clients()

    def describe(self) -> dict[str, Any]:
        """The configured master URL."""
        return {"master_url": self.master_url}


async def _standby_watch(task_status: trio.TaskStatus[None]) -> None:
    """Standby work (a lock watcher would run here): lives until the role changes."""
    log.info("toy_standby_service_started")
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        log.info("toy_standby_service_stopped")


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """The URL a standby names in its redirect."""
    options.add("--toy-master-url", default="amqp://elsewhere:5672/", help="Toy HA redirect.")
    options.add("--toy-group-file", default="", help="Toy HA group file (master, members).")
    options.add(
        "--toy-redirect",
        type=bool,
        default=True,
        help="Refuse clients with a redirect while not serving (--no-toy-redirect: leave it "
        "to the broker's own refusal).",
    )


def _fence_reason(config: Config) -> str:
    """Why clients are closed on fencing: in a group, naming the master they should go to."""
    if not config.toy_group_file:
        return "toy lock lost"
    master, _ = _group(config)
    return master_redirect_text("fenced", master)


def _group(config: Config) -> tuple[str, list[str]]:
    """The master URL and the group's member URLs (from the group file when one is given)."""
    if not config.toy_group_file:
        return config.toy_master_url, [config.toy_master_url]
    group = json.loads(Path(config.toy_group_file).read_text())
    return group["master"], list(group["members"])


@hookimpl
def plugmq_ha_strategy(config: Config) -> ToyHA | None:
    """The toy strategy for ``--ha toy``."""
    return ToyHA(config.toy_master_url) if config.ha == "toy" else None


@hookimpl
def plugmq_connection_check(broker: BrokerAPI, connection: ConnectionInfo) -> Any:
    """A broker that is not a serving master redirects clients to the master.

    ``active`` rather than the role: a listening standby becomes master before its recovery
    ends, and a client let in then would authenticate against users not yet recovered.
    """
    if broker.config.toy_redirect and not broker.active.is_set():
        master, _ = _group(broker.config)
        return ConnectionRefusal.redirect(broker.role.value, master)
    return None


@hookimpl
def plugmq_server_properties(broker: BrokerAPI) -> dict[str, Any]:
    """Advertise the group (what a failover client adds to its URL list)."""
    _, members = _group(broker.config)
    return {
        "cluster_urls": members,
        "capabilities": {"toy_ha": True},
    }


@hookimpl
def plugmq_services(broker: BrokerAPI) -> list[Service]:
    """A master service whose start and stop are logged (never started twice)."""

    async def watch(task_status: trio.TaskStatus[None]) -> None:
        log.info("toy_service_started", epoch=broker.epoch)
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            log.info("toy_service_stopped", epoch=broker.epoch)

    return [watch]


@hookimpl
def plugmq_role_changed(broker: BrokerAPI, old: Role, new: Role) -> None:
    """Log every role change with the broker's view of it."""
    log.info("toy_role_changed", old=old.value, new=new.value, active=broker.active.is_set())
