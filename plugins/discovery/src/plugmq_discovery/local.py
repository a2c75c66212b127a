"""This master's own announcement, made from what the broker and its plugins advertise.

Nothing here reaches into another plugin: the group's URLs are the ``cluster_urls`` the HA
plugin puts in the server properties (what clients get), and the federation broker id is the
``plugmq_federation_broker_id`` property federation announces there.
"""

from __future__ import annotations

from typing import Any

from plugmq.api import GroupAnnouncement

#: The server properties read (the HA plugins' and federation's).
CLUSTER_URLS = "cluster_urls"
FEDERATION_ID = "plugmq_federation_broker_id"


def local_announcement(broker: Any, interval: float) -> GroupAnnouncement:
    """What this master announces now (the URL list changes as standbys come and go)."""
    properties: dict[str, Any] = {}
    for extra in broker.plugins.server_properties(broker):
        properties.update(extra)
    broker_id = _text(properties.get(FEDERATION_ID))
    master = broker.config.get("ha_advertise_url") or _url_of(broker.addresses)
    urls = [master, *(_text(url) for url in properties.get(CLUSTER_URLS) or ())]
    mode = str(broker.config.get("ha") or "standalone")
    return GroupAnnouncement(
        group=group_name(broker, mode, broker_id, master),
        broker_id=broker_id,
        master=master,
        urls=tuple(dict.fromkeys(url for url in urls if url)),
        epoch=int(broker.epoch),
        ha=mode,
        interval=interval,
    )


def group_name(broker: Any, mode: str, broker_id: str, master: str) -> str:
    """``--ha-group`` in an HA mode; else the broker is a group of one, named by its
    federation id (or its URL without federation): every standalone broker has the default
    ``--ha-group``, which would make them all one group."""
    if mode != "standalone":
        return str(broker.config.get("ha_group") or "plugmq")
    return broker_id or master


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _url_of(addresses: list[str]) -> str:
    """``amqp://host:port/`` of the first TCP listener (the HA plugins' default too)."""
    for address in addresses:
        if address.startswith("tcp://"):
            return "amqp://" + address.removeprefix("tcp://") + "/"
    return addresses[0] if addresses else "unknown"
