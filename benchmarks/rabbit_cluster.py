"""A private 3-node RabbitMQ cluster on loopback, for quorum-queue comparisons.

Three :class:`~brokers.RabbitMQBroker` nodes (Debian's ``rabbitmq-server``), each with its own
node name, AMQP and distribution ports and directory, sharing one Erlang cookie (written into
each node's ``HOME`` before it starts: the cookie is how Erlang nodes trust each other), joined
with ``rabbitmqctl stop_app / join_cluster / start_app``. :meth:`RabbitCluster.stop` stops
every node it started, also after a crash or a kill -9 of one of them.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from brokers import RabbitMQBroker, amqp_ready

#: The quorum queue columns of ``rabbitmqctl list_queues``.
LIST_QUEUES = ("list_queues", "name", "type", "leader", "members", "online", "--formatter", "json")


class RabbitCluster:
    """Three clustered RabbitMQ nodes under ``base``; node names are unique to this run."""

    def __init__(self, base: Path, size: int = 3) -> None:
        tag = f"{os.getpid()}x{secrets.token_hex(2)}"
        self.cookie = secrets.token_hex(16).upper()
        self.nodes = [
            RabbitMQBroker(base / f"rabbit{i + 1}", node=f"hazkq{i + 1}-{tag}@localhost")
            for i in range(size)
        ]

    def _write_cookie(self, node: RabbitMQBroker) -> None:
        cookie = node.base / ".erlang.cookie"
        node.base.mkdir(parents=True, exist_ok=True)
        if not cookie.exists():
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)  # Erlang refuses a cookie others can read

    def start_node(self, index: int) -> float:
        """Start (or restart after a kill) node ``index``; seconds until it accepted AMQP."""
        node = self.nodes[index]
        self._write_cookie(node)
        return node.start()

    def start(self) -> None:
        """Start every node and join the others to the first one."""
        for index in range(len(self.nodes)):
            self.start_node(index)
        first = self.nodes[0].node
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first)
            node.ctl("start_app")
            wait_amqp(node)
        running = self.running_nodes(self.nodes[0])
        if len(running) != len(self.nodes):
            raise RuntimeError(f"the cluster did not form: running nodes {running}")

    def running_nodes(self, via: RabbitMQBroker) -> list[str]:
        """The cluster's running nodes, as ``via`` sees them."""
        status = json.loads(via.ctl("cluster_status", "--formatter", "json"))
        return list(status.get("running_nodes", []))

    def alive(self) -> list[RabbitMQBroker]:
        """Nodes whose start script still runs."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def queue_info(self, queue: str) -> dict:
        """``list_queues`` row of ``queue`` (leader, members, online), asked of a live node."""
        for node in self.alive():
            try:
                rows = json.loads(node.ctl(*LIST_QUEUES, timeout=30))
            except (RuntimeError, ValueError):
                continue
            for row in rows:
                if row.get("name") == queue:
                    return row
        raise RuntimeError(f"no live node knows queue {queue}")

    def leader(self, queue: str) -> int:
        """Index of the node that leads quorum queue ``queue``."""
        leader = self.queue_info(queue)["leader"]
        for index, node in enumerate(self.nodes):
            if node.node == leader:
                return index
        raise RuntimeError(f"leader {leader} is not one of this cluster's nodes")

    def wait_members_online(self, queue: str, timeout: float = 120.0) -> None:
        """Wait until every node runs a member of quorum queue ``queue``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.queue_info(queue).get("online", [])) == len(self.nodes):
                    return
            except RuntimeError:
                pass  # the asked node is still starting: ask again
            time.sleep(0.2)
        raise TimeoutError(f"quorum queue {queue} not back on every node: {self.queue_info(queue)}")

    def stop(self) -> None:
        """Stop every node still running (kill -9 if one does not stop)."""
        for node in self.nodes:
            node.stop()


def wait_amqp(node: RabbitMQBroker, timeout: float = 120.0) -> None:
    """Wait until ``node`` accepts AMQP again (after ``start_app``)."""
    deadline = time.monotonic() + timeout
    while not amqp_ready(node.port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node.node} not accepting AMQP: {node.tail()}")
        time.sleep(0.1)
