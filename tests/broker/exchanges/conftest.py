"""Fixtures for the exchange-type tests."""

from __future__ import annotations

import pytest
from exchange_fakes import Dest


@pytest.fixture
def q1() -> Dest:
    """A queue."""
    return Dest("q1")


@pytest.fixture
def q2() -> Dest:
    """Another queue."""
    return Dest("q2")
