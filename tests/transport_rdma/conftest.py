"""Fixtures for the RDMA tests that need a real device (the lab VM: ``make test-rdma``)."""

from __future__ import annotations

import os

import pytest

from plugmq_transport_rdma import device


@pytest.fixture
def rdma_ip() -> str:
    """The IPv4 address of the lab's RDMA device (the guest exports RDMALAB_IP)."""
    address = os.environ.get("RDMALAB_IP") or device.default_address()
    assert address, "no IPv4 address on an RDMA port"
    return address
