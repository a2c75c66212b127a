"""Celery survives master kills with a list of broker URLs.

The configuration is Celery's own failover setting: ``broker_url`` is a list (kombu's
failover URLs underneath), publishes are confirmed (``broker_transport_options``
``confirm_publish``) and retried (``task_publish_retry_policy``), tasks are acked late (after
they ran, so a task whose ack was lost runs again: at-least-once). A real worker runs in a
subprocess (``--pool=solo``); each task appends its id and the monotonic time to a file, which
the test feeds to the ledger as deliveries and acks. Nothing knows about plugmq.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from support.failover_clients import kill_points, run_through_kills
from support.failover_group import FailoverGroup
from support.ledger import Ledger
from support.polling import wait_for

TOTAL = 150
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

TASKS_MODULE = textwrap.dedent(
    """
    import os
    import time

    from celery import Celery

    app = Celery("failover_tasks", broker=os.environ["PLUGMQ_CELERY_BROKERS"].split())
    app.conf.update(
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={
            "max_retries": 50, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.5,
        },
        task_acks_late=True,
        task_default_queue="celery-failover",
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
    )


    @app.task(name="failover_tasks.record")
    def record(message_id):
        with open(os.environ["PLUGMQ_CELERY_LEDGER"], "a") as ledger:
            ledger.write(f"{message_id} {time.monotonic()}\\n")
    """
)


def load_tasks(path: Path) -> ModuleType:
    """Write the task module and import it here (the publishing side)."""
    path.write_text(TASKS_MODULE)
    spec = importlib.util.spec_from_file_location(f"failover_tasks_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def celery_app(
    toy_group: FailoverGroup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, Path]]:
    """A worker on the group (every member in ``broker_url``), and the task module here."""
    brokers = " ".join(f"amqp://guest:guest@127.0.0.1:{m.port}//" for m in toy_group.members)
    records = tmp_path / "records.txt"
    records.touch()
    monkeypatch.setenv("PLUGMQ_CELERY_BROKERS", brokers)
    monkeypatch.setenv("PLUGMQ_CELERY_LEDGER", str(records))
    tasks = load_tasks(tmp_path / "failover_tasks.py")
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "failover_tasks", "worker"),
                *("--pool=solo", "--loglevel=INFO", "--hostname", f"failover-{os.getpid()}@%h"),
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: worker.poll() is not None or " ready." in log_path.read_text(), 60)
        assert worker.poll() is None, log_path.read_text()[-4000:]
        yield tasks, records
    finally:
        worker.terminate()
        try:
            worker.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(STOP_TIMEOUT)
        tasks.app.close()


def publisher(tasks: ModuleType, ledger: Ledger) -> None:
    """Send TOTAL tasks; ``apply_async`` returns once the broker confirmed (or raises)."""
    for number in range(TOTAL):
        message_id = f"m{number}"
        ledger.publish(message_id)
        tasks.record.apply_async((message_id,), task_id=message_id)
        ledger.confirm(message_id)


def follow_records(records: Path, ledger: Ledger, stop: threading.Event) -> None:
    """Feed the worker's records to the ledger: a task ran (delivered), then was acked."""
    seen = 0
    while True:
        lines = records.read_text().splitlines()
        complete = lines if records.read_text().endswith("\n") else lines[:-1]
        for line in complete[seen:]:
            message_id, at = line.split()
            ledger.deliver(message_id)
            ledger.ack(message_id, at=float(at))
        seen = len(complete)
        if stop.wait(0.05):
            return


def test_celery_broker_url_list_survives_two_master_kills(
    toy_group: FailoverGroup, celery_app: tuple[ModuleType, Path]
) -> None:
    tasks, records = celery_app
    ledger = toy_group.ledger
    assert ledger is not None
    report = run_through_kills(
        toy_group,
        lambda stop: publisher(tasks, ledger),
        lambda stop: follow_records(records, ledger, stop),
        total=TOTAL,
        kill_at=kill_points(TOTAL, 2),
        timeout=120,
    )
    assert report.confirmed == TOTAL
    assert toy_group.takeovers == 2
