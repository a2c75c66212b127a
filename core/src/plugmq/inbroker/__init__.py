"""The in-broker client: how plugins publish into and consume from the broker they run in.

::

    client = open_client(broker, "/", "guest")      # acts as user guest in vhost /
    client.declare_queue("work", durable=True)
    await client.flush()                             # the declare is durable now
    client.publish("", "work", b"hello", properties={"delivery_mode": 2},
                   on_durable=lambda ok: print("stored" if ok else "refused"))

It is the public contract between plugins and the engine (plugins import this, never
``plugmq.broker``): the same routing, permissions (the user's configure/write/read patterns,
refused with the AMQP error a channel would be closed with), memory alarm, prefetch flow
control, acknowledgements and journaling as a client connection, with no sockets and no
frames. The built-in management service and federation are its users. See docs/plugins.md,
"The in-broker client".

A service may act as the built-in internal identity instead of a user
(:func:`open_internal_client`): every permission in the vhost, and it may publish messages
carrying any ``user_id``. Use it for the broker's own work (management replies, forwarding
other users' messages), never on behalf of a requester whose permissions should apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugmq.access import FULL, Grant, Permission
from plugmq.amqp.errors import ConnectionAccessRefused
from plugmq.inbroker.client import (
    IMPERSONATOR,
    ClientClosed,
    InBrokerClient,
    QueueStatus,
    Unroutable,
)
from plugmq.inbroker.consumer import Delivery, InBrokerConsumer
from plugmq.inbroker.durability import DurableCallback

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.vhost import VHost

#: The name the internal identity has in logs and permission errors (not a user: a user of
#: that name gets no special rights).
INTERNAL_USER = "plugmq-internal"

__all__ = [
    "IMPERSONATOR",
    "INTERNAL_USER",
    "ClientClosed",
    "Delivery",
    "DurableCallback",
    "InBrokerClient",
    "InBrokerConsumer",
    "NoSuchVHost",
    "QueueStatus",
    "Unroutable",
    "open_client",
    "open_internal_client",
]


class NoSuchVHost(ConnectionAccessRefused):
    """The vhost does not exist (yet): 403, as connection.open answers it."""


def open_client(broker: Broker, vhost: str = "/", user: str = "guest") -> InBrokerClient:
    """A client acting as ``user`` in ``vhost``, with that user's permissions there.

    Raises 403 :class:`~plugmq.amqp.errors.ConnectionAccessRefused` for a user without
    permissions in the vhost (:class:`NoSuchVHost` for a missing vhost), as connection.open
    does. Permission changes apply at once.
    Close it (or use it as a context manager) to delete its exclusive queues.
    """
    target = _vhost(broker, vhost, user)
    grant = broker.access.grant(user, vhost)
    if grant is None or user not in broker.access.users.users:
        raise ConnectionAccessRefused(f"access to vhost '{vhost}' refused for user '{user}'")
    trusted = IMPERSONATOR in broker.access.tags_of(user)
    return InBrokerClient(broker, target, grant, trusted=trusted)


def open_internal_client(broker: Broker, vhost: str = "/") -> InBrokerClient:
    """A client acting as the broker itself in ``vhost``: every permission, any ``user_id``."""
    target = _vhost(broker, vhost, INTERNAL_USER)
    grant = Grant(INTERNAL_USER, vhost, Permission(INTERNAL_USER, vhost, FULL, FULL, FULL))
    return InBrokerClient(broker, target, grant, trusted=True)


def _vhost(broker: Broker, name: str, user: str) -> VHost:
    vhost = broker.vhosts.get(name)
    if vhost is None:
        raise NoSuchVHost(f"access to vhost '{name}' refused for user '{user}': no such vhost")
    return vhost
