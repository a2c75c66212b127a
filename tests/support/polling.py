"""Bounded polling for timing-based tests: never a bare sleep, always a deadline."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Call ``probe`` until it returns a truthy value (returned); AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)


def wait_until(check: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``check`` every 0.1 s until it is true; TimeoutError naming ``what`` at the deadline
    (for checks that talk to broker processes: a slower pace than :func:`wait_for`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"not true after {timeout}s: {what}")


async def await_for(
    probe: Callable[[], Awaitable[T]], timeout: float = 5.0, interval: float = 0.02
) -> T:
    """The trio form of :func:`wait_for`."""
    with trio.fail_after(timeout):
        while not (value := await probe()):
            await trio.sleep(interval)
        return value
