"""One hop's decision: forward a message (with its new path), or drop it and say why.

The rules (docs/plugins/federation.md, "Loops"): a message's path lists the brokers it has
been in, origin first; a message that has none originated at the broker that sends it. A
broker never takes a message whose path already names it (a loop), nor one that has made
``max_hops`` hops; and the receiving broker drops a message whose origin id (origin broker
and message id, or the digest of the content as it left its origin, stamped into the path
header at the first hop, when there is no message id) it has taken in the recent past (a
duplicate: the same message over two paths, or sent again after a link broke).
"""

from __future__ import annotations

from enum import Enum
from hashlib import blake2b
from typing import NamedTuple

from plugmq_federation.dedup import DuplicateWindow, InDoubt
from plugmq_federation.wire import scan, with_path

SEPARATOR = b","
#: Separates the path from the content stamp of a message without a ``message_id``.
STAMP = b";"


class Forward(NamedTuple):
    """Forward the message with this header; ``key`` and ``route`` are what the window
    admitted (None when no window was asked)."""

    header: bytes
    key: bytes | None
    route: bytes
    #: Whether the key counts identical messages (a content stamp, not a message id).
    counted: bool = False
    #: Whether the message is persistent (``delivery_mode`` 2).
    persistent: bool = False


class Verdict(Enum):
    """Why a hop did not forward a message."""

    LOOP = "loop"
    MAX_HOPS = "max_hops"
    DUPLICATE = "duplicate"


def hop(
    header: bytes,
    body: bytes,
    sender: bytes,
    receiver: bytes,
    max_hops: int,
    window: DuplicateWindow | None,
    in_doubt: InDoubt | None = None,
    redelivered: bool = False,
) -> Forward | Verdict:
    """The header the message gets at ``receiver``, or why it must not go there.

    ``window`` is the receiver's duplicate window and ``in_doubt`` the link's (None when the
    receiver is remote: a push route's destination asks its own in its ingress exchange,
    :mod:`.ingress`); ``redelivered`` is the delivery's flag (a resend is recognised by it).
    """
    found = scan(header)
    route, _, stamp = (found.path or b"").partition(STAMP)
    path = route.split(SEPARATOR) if route else [sender]
    if receiver in path:
        return Verdict.LOOP
    if len(path) > max_hops:
        return Verdict.MAX_HOPS
    if not found.message_id and not stamp:
        # First hop of a message without an id: its content names it, computed once here
        # and carried on, because later headers differ by path.
        stamp = blake2b(header + body, digest_size=12).hexdigest().encode()
    key = None
    if window is not None:
        key = path[0] + (b"/" + found.message_id if found.message_id else b"#" + stamp)
        if redelivered and in_doubt is not None and in_doubt.resent(key):
            return Verdict.DUPLICATE
        if not window.admit(key, route, not found.message_id):
            return Verdict.DUPLICATE
    path.append(receiver)
    value = SEPARATOR.join(path)
    if stamp:
        value += STAMP + stamp
    return Forward(
        with_path(header, found, value), key, route, not found.message_id, found.persistent
    )
