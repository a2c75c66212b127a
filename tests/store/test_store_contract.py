"""The store contract, one set of test bodies run against every store.

Each scenario is a list of steps (a batch for ``apply`` or a ``mark_delivered`` call). The same
steps are folded into the core's reference :class:`StoredState`; what the store recovers must
mean the same records, in an order the contract allows. Durable stores are also closed and
reopened, and must recover the same again.
"""

from __future__ import annotations

import datetime
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from plugmq.store import Store
from plugmq.store.memory import MemoryStore
from plugmq.store.records import (
    BindingAdded,
    BindingRemoved,
    ConfigSet,
    ExchangeDeclared,
    ExchangeDeleted,
    MessageEnqueued,
    MessageRemoved,
    QueueDeclared,
    QueueDeleted,
    QueuePurged,
    Record,
)
from plugmq.store.state import StoredState
from plugmq_store_bdb import BDBStore

Step = tuple[str, object]


def msg(queue: str, message_id: int, vhost: str = "/", **fields) -> MessageEnqueued:
    """A small persistent message whose content (and enqueue time) depends only on its id."""
    return MessageEnqueued(
        vhost,
        queue,
        message_id,
        fields.pop("exchange", "amq.direct"),
        fields.pop("routing_key", f"key.{message_id}"),
        fields.pop("header", b"\x00<" + message_id.to_bytes(4, "big")),
        fields.pop("body", f"body {message_id}".encode()),
        enqueued_at=fields.pop("enqueued_at", 1_764_900_000.123456 + message_id / 7),
        **fields,
    )


def batch(*records: Record) -> Step:
    """A step applying ``records`` as one batch."""
    return ("apply", list(records))


def mark(queue: str, *ids: int, vhost: str = "/") -> Step:
    """A step calling ``mark_delivered``."""
    return ("mark", (vhost, queue, list(ids)))


# --- scenarios ---------------------------------------------------------------------------------

ARGS = {
    "x-max-length": 10,
    "x-nested": {"a": [1, "two", b"three", None, True]},
    "x-decimal": Decimal("3.14"),
    "x-when": datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC),
    "x-float": 1.5,
}

SCENARIOS: dict[str, list[Step]] = {
    "empty": [],
    "declares": [
        batch(
            ConfigSet("vhost", "/", {"description": "default"}),
            ConfigSet("user", "guest", {"tags": ["administrator"]}),
            ExchangeDeclared("/", "logs", "topic"),
            ExchangeDeclared("/", "", "direct"),
            QueueDeclared("/", "tasks", arguments=ARGS),
            QueueDeclared("other", "tasks", auto_delete=True),
            BindingAdded("/", "logs", "tasks", "queue", "*.error"),
            BindingAdded("/", "logs", "tasks", "queue", "*.error", {"x-match": "all"}),
            BindingAdded("/", "logs", "audit", "exchange", "#"),
        ),
    ],
    "redeclare_and_config_changes": [
        batch(
            ExchangeDeclared("/", "x", "direct"),
            ConfigSet("federation", "route-1", ["a", 1]),
            ConfigSet("federation", "route-2", "gone soon"),
        ),
        batch(
            ExchangeDeclared("/", "x", "fanout", internal=True, arguments={"k": "v"}),
            ConfigSet("federation", "route-1", ["b", 2]),
            ConfigSet("federation", "route-2", None),
            ConfigSet("federation", "never-set", None),
        ),
    ],
    "plugin_config_namespaces": [
        batch(
            ConfigSet("federation", "route/1", {"source": "amqp://a", "queues": ["q1", "q2"]}),
            ConfigSet("ha", "settings", {"replicas": 3, "quorum": True, "lease": 2.5}),
            ConfigSet("toy", "", b"\x00binary\xff"),
            ConfigSet("toy", "ü/key", [None, 1, -2, "three", [4.0]]),
        ),
        batch(ConfigSet("toy", "", None), ConfigSet("ha", "settings", {"replicas": 5})),
    ],
    "enqueue_times": [
        batch(
            QueueDeclared("/", "t"),
            msg("t", 1, enqueued_at=0.0),
            msg("t", 2, enqueued_at=1e-6),
            msg("t", 3, enqueued_at=4_102_444_800.000001),
            msg("t", 4, body=b"L" * 5000, enqueued_at=1_764_900_001.5),
        ),
        mark("t", 2, 4),
    ],
    "unicode_and_odd_names": [
        batch(
            QueueDeclared("vh/ü", "çà/queue\x00with nul"),
            QueueDeclared("/", ""),
            ExchangeDeclared("vh/ü", "交換", "topic"),
            BindingAdded("vh/ü", "交換", "çà/queue\x00with nul", "queue", "ключ.#"),
            msg("çà/queue\x00with nul", 1, vhost="vh/ü", routing_key="ключ.1", body=b""),
            msg("", 2, exchange="", body=bytes(range(256)) * 40),
        )
    ],
    "messages_acked_in_any_order": [
        batch(QueueDeclared("/", "a"), *(msg("a", i) for i in range(1, 8))),
        batch(MessageRemoved("/", "a", 3), MessageRemoved("/", "a", 1)),
        batch(msg("a", 8), MessageRemoved("/", "a", 8), MessageRemoved("/", "a", 99)),
    ],
    "shared_message_on_two_queues": [
        batch(QueueDeclared("/", "a"), QueueDeclared("/", "b"), msg("a", 1), msg("b", 1)),
        batch(msg("a", 2), msg("b", 2), msg("a", 3)),
        batch(MessageRemoved("/", "a", 1)),
        batch(MessageRemoved("/", "b", 2), MessageRemoved("/", "a", 2)),
    ],
    "purge": [
        batch(QueueDeclared("/", "a"), QueueDeclared("/", "b"), msg("a", 1), msg("b", 1)),
        batch(msg("a", 2), QueuePurged("/", "a"), msg("a", 3)),
        batch(QueuePurged("/", "never-declared")),
        batch(msg("a", 4), msg("a", 5), msg("a", 6), QueuePurged("/", "a", after_message_id=4)),
    ],
    "queue_deleted_with_bindings_and_messages": [
        batch(
            ExchangeDeclared("/", "x", "direct"),
            QueueDeclared("/", "q"),
            QueueDeclared("/", "keep"),
            BindingAdded("/", "x", "q", "queue", "rk"),
            BindingAdded("/", "x", "keep", "queue", "rk"),
            BindingAdded("/", "x", "q", "exchange", "same name, an exchange"),
            BindingAdded("other", "x", "q", "queue", "other vhost"),
            msg("q", 1),
            msg("keep", 1),
            msg("q", 2),
        ),
        batch(QueueDeleted("/", "q")),
        batch(QueueDeclared("/", "q"), msg("q", 3)),
    ],
    "exchange_deleted_with_bindings": [
        batch(
            ExchangeDeclared("/", "x", "topic"),
            ExchangeDeclared("/", "y", "fanout"),
            QueueDeclared("/", "x"),
            BindingAdded("/", "x", "q1", "queue", "a"),
            BindingAdded("/", "y", "x", "exchange", "to x"),
            BindingAdded("/", "y", "x", "queue", "queue named x stays"),
            BindingAdded("/", "y", "q2", "queue", "stays"),
        ),
        batch(ExchangeDeleted("/", "x"), BindingRemoved("/", "y", "q2", "queue", "stays")),
        batch(BindingRemoved("/", "nope", "nope", "queue", "not there")),
    ],
    "message_on_undeclared_queue": [
        batch(msg("ghost", 5), msg("ghost", 4)),
    ],
    "reenqueue_same_id_replaces": [
        batch(QueueDeclared("/", "a"), msg("a", 1, redelivered=True)),
        batch(msg("a", 1)),
        batch(msg("a", 2, redelivered=True)),
    ],
    "mark_delivered": [
        batch(QueueDeclared("/", "a"), QueueDeclared("/", "b"), msg("a", 1), msg("b", 1)),
        batch(msg("a", 2), msg("a", 3)),
        mark("a", 1, 3, 42),
        mark("b", 7),
        mark("nowhere", 1),
        batch(MessageRemoved("/", "a", 3)),
        mark("a", 3),
    ],
    "delete_then_redeclare_in_one_batch": [
        batch(
            QueueDeclared("/", "q"),
            msg("q", 1),
            QueueDeleted("/", "q"),
            QueueDeclared("/", "q", arguments={"x": 1}),
            msg("q", 2),
        ),
    ],
}


def random_scenario(seed: int, steps: int = 120) -> list[Step]:
    """Random batches over a small universe of names, so every record meets every other."""
    rng = random.Random(seed)
    vhosts, names = ["/", "v2"], ["a", "b", "c"]
    next_id = 1
    result: list[Step] = []
    for _ in range(steps):
        if rng.random() < 0.1:
            result.append(mark(rng.choice(names), *rng.sample(range(1, next_id + 3), 3)))
            continue
        records: list[Record] = []
        for _ in range(rng.randint(1, 8)):
            record, next_id = _random_record(rng, rng.choice(vhosts), names, next_id)
            records.append(record)
        result.append(batch(*records))
    return result


def _random_record(
    rng: random.Random, vhost: str, names: list[str], next_id: int
) -> tuple[Record, int]:
    name, other = rng.choice(names), rng.choice(names)
    kind = rng.choice(["queue", "exchange"])
    choices: list[Callable[[], Record]] = [
        lambda: QueueDeclared(vhost, name, arguments={"n": rng.randint(0, 2)}),
        lambda: QueueDeleted(vhost, name),
        lambda: QueuePurged(vhost, name),
        lambda: ExchangeDeclared(vhost, name, rng.choice(["direct", "topic"])),
        lambda: ExchangeDeleted(vhost, name),
        lambda: BindingAdded(vhost, name, other, kind, rng.choice(["k1", "k2"])),
        lambda: BindingRemoved(vhost, name, other, kind, rng.choice(["k1", "k2"])),
        lambda: ConfigSet("ns", name, rng.choice([None, 1, "x", {"k": [1, 2]}])),
        lambda: MessageRemoved(vhost, name, rng.randint(1, next_id)),
    ]
    roll = rng.random()
    if roll < 0.45:
        return msg(name, next_id, vhost=vhost, redelivered=rng.random() < 0.1), next_id + 1
    if roll < 0.55 and next_id > 1:
        return msg(name, rng.randint(max(1, next_id - 5), next_id - 1), vhost=vhost), next_id
    return rng.choice(choices)(), next_id


for _seed in range(6):
    SCENARIOS[f"random_{_seed}"] = random_scenario(_seed)


# --- the test bodies ---------------------------------------------------------------------------


class StoreUnderTest:
    """One store of the parametrized kind, with a way to reopen it."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.home = tmp_path / "data" / "bdb"
        self.store = self._make()
        self.store.open()

    def _make(self) -> Store:
        if self.kind == "memory":
            return MemoryStore()
        return BDBStore(self.home, sync="nosync")

    def reopen(self) -> None:
        """Close and open again (a new object, like a broker restart)."""
        if self.kind == "memory":
            return
        self.store.close()
        self.store = self._make()
        self.store.open()

    def crash_after(self, scenario: str) -> None:
        """Run ``scenario`` in a process that is then killed with SIGKILL, and open again.

        The memory store keeps nothing across a crash: it starts empty.
        """
        self.store.close()
        if self.kind == "bdb":
            _run_and_kill(self.home, scenario)
        self.store = self._make()
        self.store.open()


@pytest.fixture(params=["memory", "bdb"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    """The store under test, closed at the end."""
    under_test = StoreUnderTest(request.param, tmp_path)
    yield under_test
    under_test.store.close()


CRASHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from plugmq.store.state import StoredState
    from plugmq_store_bdb import BDBStore
    from store.test_store_contract import SCENARIOS, run_steps
    store = BDBStore(Path(sys.argv[1]), sync="commit")
    store.open()
    list(store.recover(lambda done, total: None))
    run_steps(store, StoredState(), SCENARIOS[sys.argv[2]])
    print("applied", flush=True)
    sys.stdin.read()  # until killed
    """
)


def _run_and_kill(home: Path, scenario: str) -> None:
    """Apply a scenario to a Berkeley DB store in a subprocess, then SIGKILL it."""
    crasher = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(home), scenario],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        lines = iter(crasher.stdout.readline, "")  # log lines first, then "applied"
        assert any(line == "applied\n" for line in lines), "the crashing writer did not apply"
    finally:
        crasher.kill()
        crasher.wait(timeout=10)
        crasher.stdin.close()
        crasher.stdout.close()


def all_redelivered(records: Iterator[Record]) -> Iterator[Record]:
    """``records`` with every message flagged redelivered."""
    for record in records:
        yield replace(record, redelivered=True) if isinstance(record, MessageEnqueued) else record


def run_steps(store: Store, state: StoredState, steps: list[Step]) -> None:
    """Feed the same steps to the store and to the reference state."""
    for action, argument in steps:
        if action == "apply":
            store.apply(argument)
            for record in argument:
                state.apply(record)
        else:
            store.mark_delivered(*argument)
            state.mark_delivered(*argument)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_recover_matches_reference_state(subject, scenario, canonical, recover) -> None:
    state = StoredState()
    run_steps(subject.store, state, SCENARIOS[scenario])
    expected = canonical(state.records())
    assert canonical(recover(subject.store)) == expected
    subject.reopen()
    assert canonical(recover(subject.store)) == expected


def test_store_satisfies_protocol(subject) -> None:
    assert isinstance(subject.store, Store)
    assert subject.store.name in ("memory", "bdb")
    assert subject.store.durable is (subject.kind == "bdb")


def test_recover_twice_gives_the_same(subject, canonical, recover) -> None:
    state = StoredState()
    run_steps(subject.store, state, SCENARIOS["shared_message_on_two_queues"])
    first = recover(subject.store)
    assert recover(subject.store) == first
    assert canonical(first) == canonical(state.records())


def test_messages_keep_enqueue_order_across_batches(subject, recover) -> None:
    ids = list(range(1, 501))
    subject.store.apply([QueueDeclared("/", "q")])
    for start in range(0, len(ids), 50):
        subject.store.apply([msg("q", i) for i in ids[start : start + 50]])
    subject.reopen()
    recovered = [r.message_id for r in recover(subject.store) if isinstance(r, MessageEnqueued)]
    assert recovered == ids


def test_empty_batch_is_allowed(subject, recover) -> None:
    subject.store.apply([])
    assert recover(subject.store) == []


def test_close_twice_is_safe(subject) -> None:
    subject.store.close()
    subject.store.close()


def test_read_queue_pages_in_order_after_an_id(subject) -> None:
    subject.store.apply([QueueDeclared("/", "q"), QueueDeclared("/", "r")])
    subject.store.apply([msg("q", i) for i in range(1, 21)] + [msg("r", 7)])
    subject.reopen()
    first = subject.store.read_queue("/", "q", 0, 8)
    assert [r.message_id for r in first] == list(range(1, 9))
    assert first[0] == msg("q", 1)
    rest = subject.store.read_queue("/", "q", 8, 100)
    assert [r.message_id for r in rest] == list(range(9, 21))
    assert subject.store.read_queue("/", "q", 20, 100) == []
    assert [r.message_id for r in subject.store.read_queue("/", "r", 0, 5)] == [7]


def test_purge_after_an_id_keeps_the_older_messages(subject, recover) -> None:
    subject.store.apply([QueueDeclared("/", "q")] + [msg("q", i) for i in range(1, 11)])
    subject.store.apply([QueuePurged("/", "q", after_message_id=6)])
    subject.reopen()
    recovered = [r.message_id for r in recover(subject.store) if isinstance(r, MessageEnqueued)]
    assert recovered == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("scenario", ["mark_delivered", "enqueue_times", "random_0"])
def test_after_an_unclean_stop_every_message_is_redelivered(
    subject, scenario, canonical, recover
) -> None:
    """Issue 17 item 12: never a false negative, also after later clean restarts."""
    state = StoredState()
    run_steps(MemoryStore(), state, SCENARIOS[scenario])
    subject.crash_after(scenario)
    survived = list(all_redelivered(state.records())) if subject.store.durable else []
    expected = canonical(survived)
    assert canonical(recover(subject.store)) == expected
    subject.reopen()  # a clean stop and start: those messages stay flagged
    assert canonical(recover(subject.store)) == expected
    for queue, messages in expected["messages"].items():
        paged = subject.store.read_queue(*queue, 0, 1000)
        assert paged == messages, f"paging {queue} in lost the redelivered flag"


def test_messages_stored_after_an_unclean_stop_keep_their_own_flags(subject, recover) -> None:
    subject.crash_after("mark_delivered")
    recover(subject.store)  # what the broker does first: ids go on above the highest seen
    subject.store.apply([QueueDeclared("/", "later"), msg("later", 100), msg("later", 101)])
    subject.store.mark_delivered("/", "later", [101])
    subject.reopen()
    later = [r for r in recover(subject.store) if isinstance(r, MessageEnqueued)]
    later = [(r.message_id, r.redelivered) for r in later if r.queue == "later"]
    assert later == [(100, False), (101, True)]
