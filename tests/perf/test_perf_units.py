"""Unit tests of the benchmark tool's pure parts: the reference matcher and the statistics."""

from __future__ import annotations

import os

import pytest

from plugmq.perf import stats
from plugmq.perf.topic_reference import make_plan, topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("sports.#", "sports", True),
        ("sports.#", "sports.s1.x", True),
        ("sports.#", "news.s1.x", False),
        ("novel.*.x", "novel.s2.x", True),
        ("novel.*.x", "novel.x", False),
        ("novel.*.x", "novel.s2.s3.x", False),
        ("#.b", "b", True),
        ("#.b", "a.c.b", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("*.*.x", "a.b.x", True),
        ("*", "", True),
        ("#", "", True),
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b.c.d", False),
    ],
)
def test_reference_matcher(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_plan_has_distinct_bindings_and_keys() -> None:
    plan = make_plan(queues=10, bindings=1000, keys=1000)
    patterns = [p for queue in plan.bindings for p in queue]
    assert len(patterns) == len(set(patterns)) == 1000
    assert len(set(plan.keys)) == 1000
    assert any("#" in p for p in patterns) and any("*" in p for p in patterns)
    matrix = plan.expected_matrix()
    counts = plan.expected_counts(2500, matrix)
    # 2500 round-robin publishes over 1000 keys: the first 500 keys were sent 3 times
    first = [q for q in range(10) if matrix[q][0]]
    assert all(counts[q][0] == 3 for q in first)


def test_percentiles() -> None:
    values = list(range(1, 1001))
    assert stats.percentile(values, 0.5) == 500
    assert stats.percentile(values, 0.99) == 990
    assert stats.percentile(values, 0.999) == 999
    summary = stats.latency_summary([1_000_000] * 10)
    assert summary["p50_ms"] == pytest.approx(1.0)


def test_read_proc_of_this_process() -> None:
    sample = stats.read_proc(os.getpid())
    assert sample.cpu_seconds > 0
    assert sample.rss_bytes > 1 << 20
