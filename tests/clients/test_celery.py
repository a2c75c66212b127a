"""Celery end to end: a real worker process executes tasks brokered by plugmq.

The worker runs as ``celery -A tasks worker --pool=solo -c 1`` in a subprocess with Celery's
defaults otherwise (mingle, gossip and heartbeats on, so their broadcast exchanges and
auto-delete queues are exercised too). Results come back through the ``rpc://`` backend, which
uses a reply queue per client (exclusive, auto-delete) and the ``reply_to``/``correlation_id``
properties. The worker is stopped in every case: SIGTERM, then SIGKILL, both bounded.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from support.broker_process import BrokerProcess

READY_TIMEOUT = 60.0
RESULT_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

TASKS_MODULE = textwrap.dedent(
    """
    import os

    from celery import Celery

    app = Celery("tasks", broker=os.environ["PLUGMQ_CELERY_BROKER"], backend="rpc://")
    app.conf.update(
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )


    @app.task(name="tasks.add")
    def add(x, y):
        return x + y


    @app.task(name="tasks.describe")
    def describe(payload):
        return {"keys": sorted(payload), "total": sum(payload.values())}


    @app.task(name="tasks.fail")
    def fail(text):
        raise ValueError(text)
    """
)


def load_tasks(path: Path) -> ModuleType:
    """Write the task module to ``path`` and import it in this process (the client side).

    The module reads the broker URL from ``PLUGMQ_CELERY_BROKER``, which must be set.
    """
    path.write_text(TASKS_MODULE)
    spec = importlib.util.spec_from_file_location(f"tasks_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for_ready(worker: subprocess.Popen, log_path: Path) -> None:
    """Wait until the worker logs that it is ready; fail with its log otherwise."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if " ready." in text:
            return
        if worker.poll() is not None:
            pytest.fail(f"celery worker exited with {worker.returncode}:\n{text[-4000:]}")
        time.sleep(0.1)
    pytest.fail(f"celery worker not ready after {READY_TIMEOUT}s:\n{text[-4000:]}")


def stop_worker(worker: subprocess.Popen) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(STOP_TIMEOUT)


@pytest.fixture
def celery_worker(
    broker: BrokerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, Path]]:
    """A running worker on a fresh broker, and the task module loaded in the test process."""
    broker_url = f"amqp://guest:guest@127.0.0.1:{broker.port}//"
    monkeypatch.setenv("PLUGMQ_CELERY_BROKER", broker_url)
    tasks = load_tasks(tmp_path / "tasks.py")
    log_path = tmp_path / "worker.log"
    environment = {**os.environ, "PLUGMQ_CELERY_BROKER": broker_url, "PYTHONPATH": str(tmp_path)}
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "--pool=solo",
                "-c",
                "1",
                "--loglevel=INFO",
                "--hostname",
                f"plugmq-test-{os.getpid()}@%h",
            ],
            cwd=tmp_path,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_ready(worker, log_path)
        yield tasks, log_path
    finally:
        stop_worker(worker)
        tasks.app.close()


def test_worker_executes_tasks_and_returns_results(
    celery_worker: tuple[ModuleType, Path], broker: BrokerProcess
) -> None:
    tasks, log_path = celery_worker
    assert tasks.add.delay(2, 3).get(timeout=RESULT_TIMEOUT) == 5
    result = tasks.describe.apply_async(({"b": 2, "a": 40},), countdown=0)
    assert result.get(timeout=RESULT_TIMEOUT) == {"keys": ["a", "b"], "total": 42}
    assert result.state == "SUCCESS"
    # Several results in flight at once on the same reply queue.
    pending = [tasks.add.delay(n, n) for n in range(10)]
    assert [r.get(timeout=RESULT_TIMEOUT) for r in pending] == [2 * n for n in range(10)]
    assert "succeeded" in log_path.read_text(errors="replace")


def test_task_error_propagates_to_the_caller(celery_worker: tuple[ModuleType, Path]) -> None:
    tasks, _ = celery_worker
    result = tasks.fail.delay("boom from the worker")
    with pytest.raises(ValueError, match="boom from the worker"):
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
    # The worker keeps going after a failed task.
    assert tasks.add.delay(20, 22).get(timeout=RESULT_TIMEOUT) == 42


def test_remote_control_ping_reaches_the_worker(celery_worker: tuple[ModuleType, Path]) -> None:
    tasks, _ = celery_worker
    replies = tasks.app.control.ping(timeout=2.0)
    assert len(replies) == 1
    ((hostname, reply),) = replies[0].items()
    assert hostname.startswith(f"plugmq-test-{os.getpid()}@")
    assert reply == {"ok": "pong"}
