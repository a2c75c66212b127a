"""Electing the master: members report their update position; a quorum picks the most up to date.

Each broker keeps an ephemeral sequential node under ``members/`` holding its id, its addresses
and its **position** ``(log epoch, log file, log offset)``: the epoch of the last master whose
log it fully received (or that it was), then the end of its Berkeley DB log (LSNs are identical
on every site of a group). Comparing positions lexicographically is Raft's "last log term, last
log index" rule: a member that followed a later master always wins over one that did not, even
if the latter's log is longer with records no quorum acknowledged.

A member reports for a **round**: the value of the ``epoch`` counter when it reported. Only
when a quorum (``replicas // 2 + 1``) has reported for the current round is a master chosen, the
member with the highest position (ties: the oldest member node). Every confirmed message was
acknowledged by a quorum, and any two quorums share a member, so the winner holds every
confirmed message. The winner takes mastership in one ZooKeeper transaction that bumps the epoch
counter (checking its version: a concurrent election makes it fail) and creates the ephemeral
``master`` node; the new counter value is the mastership's **epoch**.

Error handling: ZooKeeper errors propagate to the strategy, which waits for the session and
retries; a failed transaction means someone else won or the round moved on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import BadVersionError, NoNodeError

from plugmq_ha_zk.group import paths

NOT_ENOUGH = "Not enough cluster members connected to elect a master"
Position = tuple[int, int, int]


@dataclass(frozen=True)
class Member:
    """One member node's content."""

    node: str  # m-0000000007 (its sequence orders ties)
    broker_id: str
    position: Position
    round: int
    url: str | None
    replication: str


@dataclass(frozen=True)
class Master:
    """The ``master`` node's content."""

    broker_id: str
    epoch: int
    url: str | None
    replication: str
    position: Position | None = None


def quorum(replicas: int) -> int:
    """Members needed to elect and to confirm: ``replicas // 2 + 1``."""
    return replicas // 2 + 1


def choose(members: list[Member], replicas: int, round_: int) -> Member | None:
    """The member to make master for ``round_``, or None while fewer than a quorum reported."""
    reporters: dict[str, Member] = {}
    for member in sorted(members, key=lambda m: m.node):
        if member.round == round_:
            reporters.setdefault(member.broker_id, member)
    if len(reporters) < quorum(replicas):
        return None
    return max(reporters.values(), key=lambda m: (m.position, _negated(m.node)))


def _negated(node: str) -> int:
    """Ties go to the oldest node: a lower sequence number sorts higher."""
    return -int(node.rsplit("-", 1)[-1] or 0)


def encode(payload: dict[str, Any]) -> bytes:
    """JSON for a node."""
    return json.dumps(payload, sort_keys=True).encode()


def read_members(client: KazooClient, root: str, watch: Any = None) -> list[Member]:
    """Every member node that still exists (``watch`` fires when one's data next changes:
    a member reporting for a round wakes the others at once)."""
    members_path = paths(root)["members"]
    found = []
    for node in client.get_children(members_path):
        try:
            data, _ = client.get(f"{members_path}/{node}", watch=watch)
        except NoNodeError:
            continue
        payload = json.loads(data.decode())
        found.append(
            Member(
                node=node,
                broker_id=payload["id"],
                position=tuple(payload["position"]),  # type: ignore[arg-type]
                round=int(payload["round"]),
                url=payload.get("url"),
                replication=payload["replication"],
            )
        )
    return found


def read_master(client: KazooClient, root: str, watch: Any = None) -> Master | None:
    """The current master node, or None (``watch`` fires on its next change)."""
    try:
        data, _ = client.get(paths(root)["master"], watch=watch)
    except NoNodeError:
        if watch is not None:
            client.exists(paths(root)["master"], watch=watch)
        return None
    payload = json.loads(data.decode())
    position = payload.get("position")
    return Master(
        broker_id=payload["id"],
        epoch=int(payload["epoch"]),
        url=payload.get("url"),
        replication=payload["replication"],
        position=tuple(position) if position else None,  # type: ignore[arg-type]
    )


def current_round(client: KazooClient, root: str) -> tuple[int, int]:
    """The epoch counter's value and its version (for the taking transaction)."""
    data, stat = client.get(paths(root)["epoch"])
    return int(data.decode() or 0), stat.version


def take_mastership(
    client: KazooClient, root: str, round_: int, version: int, payload: dict[str, Any]
) -> int | None:
    """Bump the epoch and create the master node atomically; the new epoch, or None if lost."""
    node = paths(root)
    epoch = round_ + 1
    transaction = client.transaction()
    transaction.set_data(node["epoch"], str(epoch).encode(), version=version)
    transaction.create(node["master"], encode({**payload, "epoch": epoch}), ephemeral=True)
    results = transaction.commit()
    if any(isinstance(result, Exception) for result in results):
        return None
    return epoch


def end_mastership(client: KazooClient, root: str, master: Master) -> bool:
    """Delete ``master``'s node for a replica that proved it dead (:mod:`.liveness`).

    One transaction, conditional on the epoch counter still holding ``master.epoch`` at the
    version read: a newer mastership bumped it, so its node is never deleted. ZooKeeper lets
    any session delete another's ephemeral node. True if this call deleted it.
    """
    node = paths(root)
    epoch, version = current_round(client, root)
    if epoch != master.epoch:
        return False
    transaction = client.transaction()
    transaction.check(node["epoch"], version)
    transaction.delete(node["master"])
    return not any(isinstance(result, Exception) for result in transaction.commit())


def update_master(client: KazooClient, root: str, payload: dict[str, Any]) -> bool:
    """Rewrite the master node with ``payload`` (position, URL) if it is still ours.

    Ours: created by this very session and holding ``payload["epoch"]``; the write is
    conditional on the version read. A broker that lost its session (and got a new one) and
    still runs a master's service must never overwrite the next master's node. True if written.
    """
    path = paths(root)["master"]
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return False
    session = client.client_id[0] if client.client_id else None
    if stat.ephemeralOwner != session or json.loads(data.decode())["epoch"] != payload["epoch"]:
        return False
    try:
        client.set(path, encode(payload), version=stat.version)
    except (BadVersionError, NoNodeError):
        return False
    return True
