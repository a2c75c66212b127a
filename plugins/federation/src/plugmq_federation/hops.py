"""One hop's decision: forward a message (with its new path), or drop it and say why.

The rules (docs/plugins/federation.md, "Loops"): a message's path lists the brokers it has
been in, origin first; a message that has none originated at the broker that sends it. A
broker never takes a message whose path already names it (a loop), nor one that has made
``max_hops`` hops; and the receiving broker drops a message whose origin id (origin broker
and message id, or the content's digest when there is no message id) it has taken in the
recent past (a duplicate: the same message over two paths, or sent again after a link broke).
"""

from __future__ import annotations

from enum import Enum
from hashlib import blake2b
from typing import NamedTuple

from plugmq_federation.dedup import DuplicateWindow
from plugmq_federation.wire import Scan, scan, with_path

SEPARATOR = b","


class Forward(NamedTuple):
    """Forward the message with this header; ``origin`` is what the window admitted."""

    header: bytes
    origin: bytes | None


class Verdict(Enum):
    """Why a hop did not forward a message."""

    LOOP = "loop"
    MAX_HOPS = "max_hops"
    DUPLICATE = "duplicate"


def path_of(found: Scan, sender: bytes) -> list[bytes]:
    """The brokers a message has been in, origin first (``[sender]`` when it has no path)."""
    return found.path.split(SEPARATOR) if found.path else [sender]


def origin_id(path: list[bytes], found: Scan, header: bytes, body: bytes) -> bytes:
    """The message's identity across every copy: origin broker and message id (or digest)."""
    if found.message_id:
        return path[0] + b"/" + found.message_id
    return path[0] + b"#" + blake2b(header + body, digest_size=16).digest()


def hop(
    header: bytes,
    body: bytes,
    sender: bytes,
    receiver: bytes,
    max_hops: int,
    window: DuplicateWindow | None,
) -> Forward | Verdict:
    """The header the message gets at ``receiver``, or why it must not go there.

    ``window`` is the receiver's duplicate window (None when the receiver is remote: a push
    route cannot see the destination's window, see the docs' "Guarantees").
    """
    found = scan(header)
    path = path_of(found, sender)
    if receiver in path:
        return Verdict.LOOP
    if len(path) > max_hops:
        return Verdict.MAX_HOPS
    origin = None
    if window is not None:
        origin = origin_id(path, found, header, body)
        if not window.admit(origin):
            return Verdict.DUPLICATE
    path.append(receiver)
    return Forward(with_path(header, found, SEPARATOR.join(path)), origin)
