"""The group's persistent nodes in ZooKeeper and this broker's identity in its data directory.

Layout under ``--zk-path`` (say ``/plugmq/g1``)::

    /plugmq/g1            {"plugmq_group": "<uuid>", "replicas": 3}     persistent
    /plugmq/g1/sites/<id> {"replication": "h:p", "url": ...}           persistent, one per broker
    /plugmq/g1/members/m-0000000007  {id, position, round, ...}        ephemeral sequential
    /plugmq/g1/master     {id, epoch, url, replication, position}      ephemeral (the master's)
    /plugmq/g1/epoch      "<n>"                                        persistent counter

The data directory holds ``ha_zk.json``: the broker's id and the group it belongs to. A store
that holds data but no such file (or another group's) is refused: it would otherwise be silently
overwritten by the group's state (or, worse, elected with foreign data).

Error handling: every check raises :class:`GroupError` with a message for the operator; the
strategy stops the broker with it (never a guess, never a silent empty start).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

IDENTITY_FILE = "ha_zk.json"


class GroupError(Exception):
    """The group cannot be joined safely; the message says why and what to do."""


@dataclass(frozen=True)
class Identity:
    """Who this broker is (kept in its data directory) and which group it belongs to."""

    broker_id: str
    group: str  # the group's uuid, from its ZooKeeper node


def paths(root: str) -> dict[str, str]:
    """The group's node paths."""
    return {
        "root": root,
        "sites": f"{root}/sites",
        "members": f"{root}/members",
        "master": f"{root}/master",
        "epoch": f"{root}/epoch",
    }


def ensure_group(client: KazooClient, root: str, replicas: int) -> str:
    """Create the group's nodes or check them; return the group's uuid.

    Raises :class:`GroupError` for a path that is not a plugmq group or a ``--replicas`` that
    differs from the group's.
    """
    node = paths(root)
    client.ensure_path(root.rsplit("/", 1)[0] or "/")
    wanted = json.dumps({"plugmq_group": str(uuid.uuid4()), "replicas": replicas}).encode()
    with contextlib.suppress(NodeExistsError):
        client.create(root, wanted)
    data, _ = client.get(root)
    group = _group_data(root, data)
    if group["replicas"] != replicas:
        raise GroupError(
            f"--replicas {replicas} but the group at {root} was created with --replicas "
            f"{group['replicas']}: every broker of a group must use the same value"
        )
    for path in (node["sites"], node["members"]):
        client.ensure_path(path)
    with contextlib.suppress(NodeExistsError):
        client.create(node["epoch"], b"0")
    return str(group["plugmq_group"])


def _group_data(root: str, data: bytes) -> dict[str, Any]:
    try:
        group = json.loads(data.decode() or "null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        group = None
    if not isinstance(group, dict) or "plugmq_group" not in group:
        raise GroupError(
            f"the ZooKeeper node {root} exists but is not a plugmq group ({data[:60]!r}): "
            "--zk-path must name a path of its own, like /plugmq/<group>"
        )
    return group


def register_site(
    client: KazooClient, root: str, identity: Identity, replicas: int, info: dict[str, Any]
) -> None:
    """Record this broker as one of the group's ``replicas`` sites (persistent).

    A broker that is not yet a site is refused when the group already has ``replicas`` sites:
    that is two groups sharing one path, or a broker too many.
    """
    sites = paths(root)["sites"]
    path = f"{sites}/{identity.broker_id}"
    data = json.dumps(info).encode()
    if client.exists(path):
        client.set(path, data)
        return
    others = client.get_children(sites)
    if len(others) >= replicas:
        known = ", ".join(_site_address(client, sites, other) for other in sorted(others))
        raise GroupError(
            f"the group at {root} already has its {replicas} brokers ({known}); this broker "
            f"({info.get('replication')}) is not one of them. Two groups on one --zk-path, or "
            "a broker too many: give this group its own path, or remove a retired broker's "
            f"node under {sites}"
        )
    client.create(path, data)


def _site_address(client: KazooClient, sites: str, site: str) -> str:
    try:
        data, _ = client.get(f"{sites}/{site}")
        return str(json.loads(data.decode()).get("replication", site))
    except (NoNodeError, ValueError):
        return site


def site_addresses(client: KazooClient, root: str) -> list[tuple[str, int]]:
    """Every registered site's replication address (the repmgr peers)."""
    sites = paths(root)["sites"]
    found = []
    for site in client.get_children(sites):
        try:
            data, _ = client.get(f"{sites}/{site}")
        except NoNodeError:
            continue
        host, _, port = str(json.loads(data.decode())["replication"]).rpartition(":")
        found.append((host, int(port)))
    return found


def load_identity(data_dir: Path, group: str, root: str) -> Identity:
    """This broker's identity, created for a new data directory; refuse a foreign store."""
    path = data_dir / IDENTITY_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            identity = Identity(str(stored["broker_id"]), str(stored["group"]))
        except (OSError, ValueError, KeyError) as error:
            raise GroupError(
                f"cannot read {path}: {error}; restore it or move the data directory away"
            ) from None
        if identity.group != group:
            raise GroupError(
                f"the data directory {data_dir} belongs to another group ({identity.group}), "
                f"not to the group at {root} ({group}): pass this group's data directory, or "
                "move this one away to join with an empty store"
            )
        return identity
    if _holds_store(data_dir):
        raise GroupError(
            f"the data directory {data_dir} holds a store that is not from the group at {root} "
            f"(no {IDENTITY_FILE}): it would be overwritten by the group's data. Move it away "
            "to join with an empty store, or use it with the group it came from"
        )
    identity = Identity(str(uuid.uuid4()), group)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"broker_id": identity.broker_id, "group": group}) + "\n")
    return identity


def _holds_store(data_dir: Path) -> bool:
    bdb = data_dir / "bdb"
    return bdb.is_dir() and any(bdb.glob("*.db"))
