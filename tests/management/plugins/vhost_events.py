"""A test plugin logging ``plugmq_vhost_added`` / ``plugmq_vhost_deleted`` calls."""

from __future__ import annotations

import structlog

from plugmq.hookspecs import hookimpl

log = structlog.get_logger("test.vhost_events")


@hookimpl
def plugmq_vhost_added(broker, vhost) -> None:
    """Log the new vhost and whether management already serves it (it should not yet)."""
    log.info("test_vhost_added", vhost=vhost.name, queues=sorted(vhost.queues))


@hookimpl
def plugmq_vhost_deleted(broker, vhost) -> None:
    """Log the deleted vhost and whether it is gone from the broker."""
    log.info("test_vhost_deleted", vhost=vhost.name, present=vhost.name in broker.vhosts)
