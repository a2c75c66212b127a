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

DEFAULT_SIZE = 200_000


class DuplicateWindow:
    """Origin keys a broker took recently (bounded by count); one per broker, shared by links."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        #: key -> [admitted, {path: arrived}]; insertion order makes eviction O(1).
        self._seen: OrderedDict[bytes, list] = OrderedDict()

    def admit(self, key: bytes, path: bytes, counted: bool) -> bool:
        """True (and remember it) when the message is not a copy of one admitted.

        ``counted`` keys (content digests) admit one message per arrival over the busiest
        path; the others (message ids) admit once.
        """
        entry = self._seen.get(key)
        if entry is None:
            self._seen[key] = [1, {path: 1}]
            if len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True
        if not counted:
            return False
        arrived = entry[1][path] = entry[1].get(path, 0) + 1
        if arrived > entry[0]:
            entry[0] = arrived
            return True
        return False

    def forget(self, key: bytes, path: bytes) -> None:
        """Undo one admission (its forwarding failed, so a later copy must be let in)."""
        entry = self._seen.get(key)
        if entry is None:
            return
        entry[0] -= 1
        entry[1][path] = entry[1].get(path, 1) - 1
        if entry[0] <= 0:
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)


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
