"""Numbers: percentiles, rates, and a process's CPU time and memory from ``/proc``."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) percentile of already sorted values, nearest-rank; NaN if empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float | int]:
    """p50/p99/p99.9/max/mean in milliseconds of latency samples given in nanoseconds."""
    ordered = sorted(samples_ns)
    to_ms = 1e-6
    return {
        "samples": len(ordered),
        "p50_ms": percentile(ordered, 0.50) * to_ms,
        "p99_ms": percentile(ordered, 0.99) * to_ms,
        "p999_ms": percentile(ordered, 0.999) * to_ms,
        "max_ms": (ordered[-1] * to_ms) if ordered else math.nan,
        "mean_ms": (statistics.fmean(ordered) * to_ms) if ordered else math.nan,
    }


def rate(count: float, seconds: float) -> float:
    """``count`` per second; 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0


def median(values: Sequence[float]) -> float:
    """The median, ignoring NaN; NaN when nothing is left."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


@dataclass(frozen=True)
class ProcSample:
    """CPU seconds (user + system, every thread) and resident memory of one process."""

    cpu_seconds: float
    rss_bytes: int


def read_proc(pid: int) -> ProcSample:
    """Sample ``/proc/<pid>/stat`` (utime + stime) and ``/proc/<pid>/status`` (VmRSS).

    Raises :class:`OSError` if the process does not exist.
    """
    with open(f"/proc/{pid}/stat", "rb") as stat_file:
        stat = stat_file.read()
    # the command name (field 2) may contain spaces: split after its closing parenthesis
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss = 0
    with open(f"/proc/{pid}/status", "rb") as status_file:
        for line in status_file:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
    return ProcSample((utime + stime) / _CLOCK_TICKS, rss)


class BrokerMeter:
    """CPU and RSS of the broker process between :meth:`start` and :meth:`stop`.

    Without a pid every figure is None (the broker may be remote).
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._start: ProcSample | None = None
        self._stop: ProcSample | None = None

    def sample(self) -> ProcSample | None:
        """A sample now, or None without a pid."""
        return read_proc(self.pid) if self.pid else None

    def start(self) -> None:
        """Begin the measured interval."""
        self._start = self.sample()

    def stop(self) -> None:
        """End the measured interval."""
        self._stop = self.sample()

    @property
    def cpu_seconds(self) -> float | None:
        """Broker CPU seconds spent in the interval."""
        if self._start is None or self._stop is None:
            return None
        return self._stop.cpu_seconds - self._start.cpu_seconds

    @property
    def rss_bytes(self) -> int | None:
        """Broker RSS at the end of the interval."""
        return self._stop.rss_bytes if self._stop is not None else None

    def cpu_us_per(self, count: int) -> float | None:
        """Broker CPU microseconds per unit of ``count`` (messages, deliveries...)."""
        cpu = self.cpu_seconds
        if cpu is None or count <= 0:
            return None
        return cpu / count * 1e6
