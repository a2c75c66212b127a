"""Recognising copies: the broker's duplicate window and a link's in-doubt set.

Two kinds of copies reach a broker. *Path copies*: in a mesh the same message arrives over two
paths (different paths in its header). *Resends*: a link broke after this broker stored a
message but before the source got the ack, so the source delivers it again (``redelivered``).

A message with a ``message_id`` is one message per (origin broker, message id): the window
admits that key once. A message without one is named by the digest of its content as it left
its origin, and identical messages are legitimate (a benchmark's, a heartbeat's), so the
window counts, per content key, how many arrived over each path, and admits a message only
when its path's count goes above the number already admitted: two identical messages sent
once each arrive twice over each path and are admitted twice. Resends come over the same path
and would count as new ones; the link recognises them instead, by the in-doubt set: the keys
of messages it stored recently (their ack may have been lost), consumed one for one.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque

#: Keys remembered: path copies in a mesh arrive within this many messages of each other.
DEFAULT_SIZE = 100_000


class DuplicateWindow:
    """Origin keys a broker took recently (bounded by count); one per broker, shared by links.

    Most keys arrive once, so an entry stays small until a second arrival: ``None`` for a
    message id, the first path for a content key; then ``[admitted, {path: arrived}]``.
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        #: Insertion order makes evicting the oldest O(1).
        self._seen: OrderedDict[bytes, bytes | list | None] = OrderedDict()

    def admit(self, key: bytes, path: bytes, counted: bool) -> bool:
        """True (and remember it) when the message is not a copy of one admitted.

        ``counted`` keys (content digests) admit one message per arrival over the busiest
        path; the others (message ids) admit once.
        """
        seen = self._seen
        if key not in seen:
            seen[key] = path if counted else None
            if len(seen) > self.size:
                seen.popitem(last=False)
            return True
        entry = seen[key]
        if entry is None:
            return False
        if entry.__class__ is bytes:
            entry = seen[key] = [1, {entry: 1}]
        arrived = entry[1][path] = entry[1].get(path, 0) + 1  # type: ignore[index]
        if arrived > entry[0]:  # type: ignore[index]
            entry[0] = arrived  # type: ignore[index]
            return True
        return False

    def forget(self, key: bytes, path: bytes) -> None:
        """Undo one admission (its forwarding failed, so a later copy must be let in)."""
        entry = self._seen.get(key, _ABSENT)
        if entry is _ABSENT:
            return
        if entry is None or entry.__class__ is bytes:
            del self._seen[key]
            return
        entry[0] -= 1  # type: ignore[index]
        entry[1][path] = entry[1].get(path, 1) - 1  # type: ignore[index]
        if entry[0] <= 0:  # type: ignore[index]
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)


_ABSENT = object()


class InDoubt:
    """Keys of the messages a link stored most recently: their acks may not have reached the
    source, which then delivers them again marked ``redelivered``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[bytes] = deque()
        self._count: Counter[bytes] = Counter()

    def stored(self, key: bytes) -> None:
        """A message with ``key`` is stored here; its ack is on its way."""
        self._order.append(key)
        self._count[key] += 1
        if len(self._order) > self.size:
            old = self._order.popleft()
            self._count[old] -= 1
            if self._count[old] <= 0:
                del self._count[old]

    def resent(self, key: bytes) -> bool:
        """True (consuming one) when a redelivered ``key`` is a message already stored."""
        if self._count.get(key, 0) <= 0:
            return False
        self._count[key] -= 1
        if not self._count[key]:
            del self._count[key]
        return True
