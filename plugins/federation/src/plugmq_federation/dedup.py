"""The duplicate window: origin ids a broker took recently, bounded by count."""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_SIZE = 200_000


class DuplicateWindow:
    """Remembers the last ``size`` origin ids admitted; one per broker, shared by its links.

    Bounded so memory stays flat: an id older than ``size`` admissions is forgotten, and a
    copy arriving after that is taken again (at-least-once). A dict keeps insertion order,
    so evicting the oldest is O(1).
    """

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        #: Copies refused since the broker started.
        self.duplicates = 0

    def admit(self, origin: bytes) -> bool:
        """True (and remember it) when ``origin`` was not seen in the window, else False."""
        seen = self._seen
        if origin in seen:
            self.duplicates += 1
            return False
        seen[origin] = None
        if len(seen) > self.size:
            seen.popitem(last=False)
        return True

    def forget(self, origin: bytes) -> None:
        """Take ``origin`` back out (its forwarding failed, so a copy must be let in)."""
        self._seen.pop(origin, None)

    def __len__(self) -> int:
        return len(self._seen)
