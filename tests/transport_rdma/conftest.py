"""Fixtures for the RDMA tests that need a real device (the lab VM: ``make test-rdma``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from rdma_lab import RdmaBroker

from plugmq_transport_rdma import device


@pytest.fixture
def rdma_ip() -> str:
    """The IPv4 address of the lab's RDMA device (the guest exports RDMALAB_IP)."""
    address = os.environ.get("RDMALAB_IP") or device.default_address()
    assert address, "no IPv4 address on an RDMA port"
    return address


@pytest.fixture(scope="module")
def rdma_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RdmaBroker]:
    """One broker per module (starting one and adding a user costs ~20 s under TCG)."""
    ip = os.environ.get("RDMALAB_IP") or device.default_address() or ""
    process = RdmaBroker(tmp_path_factory.mktemp("rdma-broker"), ip).start()
    yield process
    process.stop()
    print("broker log tail:\n" + "\n".join(process.log_path.read_text().splitlines()[-20:]))
