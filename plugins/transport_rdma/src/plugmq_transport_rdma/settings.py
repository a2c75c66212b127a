"""Defaults and limits shared by the listener, the dialer and the flags."""

from __future__ import annotations

from dataclasses import dataclass

from plugmq_transport_rdma.framing import MIN_BUFFER_SIZE

DEFAULT_PORT = 5673
DEFAULT_BUFFERS = 16
DEFAULT_BUFFER_SIZE = 16 * 1024
MAX_BUFFERS = 4096
MAX_BUFFER_SIZE = 16 * 1024 * 1024
#: RC transport retries (ConnParam.retry_count). A vanished peer is noticed after about
#: (RETRY + 1) ack timeouts (~2.3 s each on Soft-RoCE: 13.7 s measured with 5).
RETRY = 3


@dataclass(frozen=True)
class RingSettings:
    """Receive/send ring shape of every connection: ``buffers`` of ``buffer_size`` bytes each."""

    buffers: int = DEFAULT_BUFFERS
    buffer_size: int = DEFAULT_BUFFER_SIZE

    @property
    def registered_bytes(self) -> int:
        """Pinned memory per connection: a send and a receive ring (plus a 4-byte word)."""
        return 2 * self.buffers * self.buffer_size

    def problem(self) -> str | None:
        """Why these values are unusable, or None."""
        if not 2 <= self.buffers <= MAX_BUFFERS:
            return f"--rdma-buffers {self.buffers} must be between 2 and {MAX_BUFFERS}"
        if not MIN_BUFFER_SIZE <= self.buffer_size <= MAX_BUFFER_SIZE:
            return (
                f"--rdma-buffer-size {self.buffer_size} must be between {MIN_BUFFER_SIZE} "
                f"and {MAX_BUFFER_SIZE}"
            )
        return None
