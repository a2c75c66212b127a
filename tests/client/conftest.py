"""Fixtures for the client tests: a real broker to talk to.

Every test here is written against ``amqp_url``, parametrized by broker kind: plugmq (a real
broker process, the session's ``shared_broker``) and a private RabbitMQ node (see
:mod:`rabbitmq_node`) started once per session, so the client is checked against the dialect's
reference too.

Rules: the broker is shared by the session, so tests use server-named or uniquely named
queues and exchanges; readiness is an AMQP handshake polled with a deadline, never a sleep.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from rabbitmq_node import RabbitMQNode, free_port

BROKER_KINDS = ["plugmq", "rabbitmq"]


@pytest.fixture(scope="session")
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQNode]:
    """One private RabbitMQ node for the whole session."""
    node = RabbitMQNode(tmp_path_factory.mktemp("rabbitmq"))
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def rabbitmq_url(rabbitmq_node: RabbitMQNode) -> str:
    """The AMQP URL of the session's RabbitMQ node."""
    return rabbitmq_node.url


@pytest.fixture(scope="session")
def plugmq_url(shared_broker) -> str:
    """The AMQP URL of the session's plugmq broker."""
    return shared_broker.url


@pytest.fixture(params=BROKER_KINDS)
def amqp_url(request: pytest.FixtureRequest) -> str:
    """The URL of a running broker of each kind in :data:`BROKER_KINDS`."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def broker_kind(amqp_url: str, request: pytest.FixtureRequest) -> str:
    """Which broker ``amqp_url`` points at (for the rare broker-specific test)."""
    return request.node.callspec.params["amqp_url"]


@pytest.fixture
def dead_url() -> str:
    """An AMQP URL on a loopback port where nothing listens."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/"


@pytest.fixture
def name() -> str:
    """A unique name for queues and exchanges of one test."""
    return f"clienttest-{uuid.uuid4().hex[:12]}"
