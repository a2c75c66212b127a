"""The control-plane event hooks (``plugmq_exchange_declared`` ... ``plugmq_consumer_removed``)
fire exactly once per real change, also for state rebuilt by recovery, and a plugin failing in
one is contained.

A real broker with the Berkeley DB store runs the ``event_counter`` test plugin, which appends
every event to a JSON-lines file. Real pika clients run a seeded random sequence of declares,
binds (duplicates included), unbinds (missing ones included), deletes, consumers, channel and
connection closes over durable, transient, auto-delete and exclusive entities. A small model
replays each operation and says which events it must fire; after each operation the new lines
of the file must be exactly those (as a multiset: the order inside a cascade is not part of the
contract). Then the broker is killed with SIGKILL and restarted: recovery must fire exactly the
events of the durable state the model kept, and nothing for transient state; a second random
round runs on the recovered state. A failing seed is replayed by running its parameter.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pika
import pytest
from support.admin_cli import cli_ok
from support.broker_process import BrokerProcess, broker_process
from support.polling import wait_for

from plugmq.events import BindingEvent
from plugmq.plugins.manager import PluginLoadError, PluginManager

PLUGINS = Path(__file__).parent / "plugins"
COUNTER = PLUGINS / "event_counter.py"
RAISER = PLUGINS / "event_raiser.py"
STANDARD = ("amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match")

Event = tuple


# -- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str
    durable: bool
    auto_delete: bool


@dataclass(frozen=True)
class QueueSpec:
    name: str
    durable: bool
    auto_delete: bool
    exclusive: bool


EXCHANGES = (
    ExchangeSpec("ev.x0", "direct", True, False),
    ExchangeSpec("ev.x1", "fanout", False, False),
    ExchangeSpec("ev.x2", "topic", True, True),
    ExchangeSpec("ev.x3", "direct", False, True),
    ExchangeSpec("ev.x4", "topic", True, False),
    ExchangeSpec("ev.x5", "fanout", True, True),
)
QUEUES = (
    QueueSpec("ev.q0", True, False, False),
    QueueSpec("ev.q1", False, False, False),
    QueueSpec("ev.q2", True, True, False),
    QueueSpec("ev.q3", False, True, False),
    QueueSpec("ev.q4", False, False, True),
    QueueSpec("ev.q5", True, True, True),
    QueueSpec("ev.q6", True, False, False),
)
KEYS = ("a", "b", "a.*")
ARGUMENTS = ({}, {"k": 1})

# A binding: (source, destination, kind, routing key, arguments as sorted JSON).
Binding = tuple[str, str, str, str, str]


def _args_key(arguments: dict) -> str:
    return json.dumps(arguments, sort_keys=True)


@dataclass
class LiveQueue:
    spec: QueueSpec
    owner: int | None  # the model connection owning an exclusive queue
    had_consumer: bool = False

    @property
    def durable(self) -> bool:
        """Exclusive queues are never stored, whatever the declare said."""
        return self.spec.durable and not self.spec.exclusive


@dataclass
class Model:
    """What the broker holds, and the events each change must fire."""

    exchanges: dict[str, ExchangeSpec] = field(default_factory=dict)
    queues: dict[str, LiveQueue] = field(default_factory=dict)
    bindings: set[Binding] = field(default_factory=set)
    consumers: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # tag: queue, conn, ch
    fired: list[Event] = field(default_factory=list)

    def take(self) -> list[Event]:
        fired, self.fired = self.fired, []
        return fired

    # exchanges
    def declare_exchange(self, spec: ExchangeSpec) -> None:
        if spec.name not in self.exchanges:
            self.exchanges[spec.name] = spec
            self.fired.append(("exchange_declared", spec.name, spec.durable))

    def is_exchange(self, name: str) -> bool:
        return name in self.exchanges or name in STANDARD

    def delete_exchange(self, name: str) -> None:
        if name not in self.exchanges:
            return
        spec = self.exchanges.pop(name)
        for binding in sorted(b for b in self.bindings if b[1] == name and b[2] == "exchange"):
            self._drop_binding(binding)
        for binding in sorted(b for b in self.bindings if b[0] == name):
            self.bindings.discard(binding)
            self.fired.append(("binding_removed", *binding))
        self.fired.append(("exchange_deleted", name, spec.durable))

    # queues
    def declare_queue(self, spec: QueueSpec, connection: int) -> None:
        if spec.name not in self.queues:
            owner = connection if spec.exclusive else None
            live = self.queues[spec.name] = LiveQueue(spec, owner)
            self.fired.append(("queue_declared", spec.name, live.durable))

    def delete_queue(self, name: str) -> None:
        live = self.queues.pop(name, None)
        if live is None:
            return
        for binding in sorted(b for b in self.bindings if b[1] == name and b[2] == "queue"):
            self._drop_binding(binding)
        for tag in sorted(t for t, (queue, _, _) in self.consumers.items() if queue == name):
            del self.consumers[tag]
            self.fired.append(("consumer_removed", name, tag))
        self.fired.append(("queue_deleted", name, live.durable))

    # bindings
    def bind(self, binding: Binding) -> None:
        if binding not in self.bindings:
            self.bindings.add(binding)
            self.fired.append(("binding_added", *binding))

    def unbind(self, binding: Binding) -> None:
        if binding in self.bindings:
            self._drop_binding(binding)

    def _drop_binding(self, binding: Binding) -> None:
        """Remove a binding; an auto-delete source left without bindings goes too."""
        self.bindings.discard(binding)
        self.fired.append(("binding_removed", *binding))
        source = self.exchanges.get(binding[0])
        if source and source.auto_delete and not any(b[0] == source.name for b in self.bindings):
            self.delete_exchange(source.name)

    # consumers, channels, connections
    def consume(self, tag: str, queue: str, connection: int, channel: int) -> None:
        self.consumers[tag] = (queue, connection, channel)
        self.queues[queue].had_consumer = True
        self.fired.append(("consumer_added", queue, tag))

    def cancel(self, tag: str) -> None:
        queue, _, _ = self.consumers.pop(tag)
        self.fired.append(("consumer_removed", queue, tag))
        live = self.queues[queue]
        if live.spec.auto_delete and live.had_consumer and not self._consumed(queue):
            self.delete_queue(queue)

    def _consumed(self, queue: str) -> bool:
        return any(q == queue for q, _, _ in self.consumers.values())

    def close_channel(self, connection: int, channel: int) -> None:
        for tag, (_, conn, ch) in sorted(self.consumers.items()):
            if (conn, ch) == (connection, channel) and tag in self.consumers:
                self.cancel(tag)

    def close_connection(self, connection: int, channels: int) -> None:
        for channel in range(channels):
            self.close_channel(connection, channel)
        for name in sorted(n for n, q in self.queues.items() if q.owner == connection):
            self.delete_queue(name)

    # recovery
    def recover(self) -> list[Event]:
        """Keep the durable state; return the events its recovery fires."""
        self.consumers.clear()
        self.exchanges = {n: s for n, s in self.exchanges.items() if s.durable}
        self.queues = {n: q for n, q in self.queues.items() if q.durable}
        for live in self.queues.values():
            live.had_consumer = False
        self.bindings = {b for b in self.bindings if self._ends_exist(b)}
        events: list[Event] = [("vhost_added", "/")]
        events += [("exchange_declared", name, True) for name in STANDARD]
        events += [("exchange_declared", n, True) for n in self.exchanges]
        events += [("queue_declared", n, True) for n in self.queues]
        events += [("binding_added", *b) for b in self.bindings]
        return events

    def _ends_exist(self, binding: Binding) -> bool:
        source, destination, kind, _, _ = binding
        ends = self.queues if kind == "queue" else self.exchanges
        return self.is_exchange(source) and (destination in ends or destination in STANDARD)


# -- reading the plugin's log --------------------------------------------------------------------


def _ours(line: dict) -> bool:
    """Events about the test's entities (the management service's own are left out)."""
    name = line.get("name") or line.get("queue") or line.get("destination")
    return line["event"].startswith("vhost") or name.startswith(("ev.", "amq."))


def _as_event(line: dict) -> Event:
    kind = line["event"]
    if kind.startswith("vhost"):
        return (kind, line["vhost"])
    if kind.startswith(("exchange", "queue")):
        return (kind, line["name"], line["durable"])
    if kind.startswith("binding"):
        args = _args_key(line["arguments"])
        return (kind, line["source"], line["destination"], line["kind"], line["key"], args)
    return (kind, line["queue"], line["tag"])


class EventLog:
    """The lines the plugin wrote, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0
        self.lines: list[dict] = []

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="utf-8")
        lines = [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
        return [line for line in lines if _ours(line)]

    def take(self, count: int) -> list[dict]:
        """Wait until ``count`` more events were written, then return them (and later extras
        show up in the next call)."""
        if count:
            # A timeout is reported by the comparison that follows, naming what is missing.
            with contextlib.suppress(AssertionError):
                wait_for(lambda: len(self._read()) >= self.seen + count, timeout=10)
        self.lines = self._read()
        new = self.lines[self.seen : self.seen + count]
        self.seen += len(new)
        return new

    def rest(self) -> list[dict]:
        """Everything written and not yet taken."""
        self.lines = self._read()
        new = self.lines[self.seen :]
        self.seen = len(self.lines)
        return new


def _assert_same(expected: list[Event], lines: list[dict], step: str) -> None:
    got = Counter(_as_event(line) for line in lines)
    want = Counter(expected)
    assert got == want, (
        f"{step}: missing {want - got}, unexpected {got - want} "
        "(an unexpected event may be a stray one of the step before)"
    )


class OrderChecker:
    """Replays recorded events and checks the order the contract promises: an entity is
    announced once before it is used and deleted once after its bindings and consumers went;
    a vhost's first event is ``vhost_added`` and its last ``vhost_deleted``."""

    def __init__(self) -> None:
        self.vhosts: dict[str, dict[str, set]] = {}

    def check(self, lines: list[dict]) -> None:
        for number, line in enumerate(lines):
            try:
                self._apply(line)
            except AssertionError as error:
                raise AssertionError(f"event {number} {line}: {error}") from error

    def _apply(self, line: dict) -> None:
        kind, vhost = line["event"], line["vhost"]
        if kind == "vhost_added":  # new, or rebuilt after a crash: start from nothing
            self.vhosts[vhost] = {k: set() for k in ("exchange", "queue", "binding", "consumer")}
            return
        assert vhost in self.vhosts, "event of a vhost not announced (or already deleted)"
        state = self.vhosts[vhost]
        if kind == "vhost_deleted":
            assert not any(state.values()), f"vhost deleted before its entities: {state}"
            del self.vhosts[vhost]
            return
        what, change = kind.split("_")
        key = self._key(what, line, state)
        if change in ("declared", "added"):
            assert key not in state[what], "announced twice"
            state[what].add(key)
            return
        assert key in state[what], "removed but never announced (or removed twice)"
        state[what].discard(key)
        if what in ("exchange", "queue"):
            bindings = state["binding"]
            assert not any(b[0] == key or (b[1], b[2]) == (key, what) for b in bindings)
            assert not any(c[0] == key for c in state["consumer"] if what == "queue")

    @staticmethod
    def _key(what: str, line: dict, state: dict[str, set]) -> object:
        """An entity's identity; bindings and consumers must name live entities."""
        if what == "consumer":
            assert line["queue"] in state["queue"], "consumer of an unknown queue"
            return (line["queue"], line["tag"])
        if what == "binding":
            key = _as_event(line)[1:]
            assert key[0] in state["exchange"], "binding from an unknown exchange"
            assert key[1] in state[key[2]], "binding to an unknown destination"
            return key
        return line["name"]


# -- the clients ---------------------------------------------------------------------------------

CHANNELS = 2


class Clients:
    """A few pika connections with two channels each; ``slots`` index them for the model."""

    def __init__(self, broker: BrokerProcess, count: int) -> None:
        self.broker = broker
        self.connections: list[pika.BlockingConnection] = []
        self.channels: list[list] = []
        self.generation = 0  # tags stay unique across reconnects
        for _ in range(count):
            self.connections.append(None)  # type: ignore[arg-type]
            self.channels.append([])
            self.reopen(len(self.connections) - 1)

    def reopen(self, index: int) -> None:
        params = pika.ConnectionParameters("127.0.0.1", self.broker.port, heartbeat=0)
        connection = pika.BlockingConnection(params)
        self.connections[index] = connection
        self.channels[index] = [connection.channel() for _ in range(CHANNELS)]

    def reopen_channel(self, index: int, number: int) -> None:
        self.channels[index][number].close()
        self.channels[index][number] = self.connections[index].channel()

    def close(self) -> None:
        for connection in self.connections:
            if connection.is_open:
                connection.close()


def _noop(*_: object) -> None:
    return None


class Round:
    """One seeded random sequence of operations, checked operation by operation."""

    def __init__(self, model: Model, clients: Clients, log: EventLog, rng: random.Random):
        self.model = model
        self.clients = clients
        self.log = log
        self.rng = rng
        self.tags = 0

    def run(self, steps: int) -> None:
        for step in range(steps):
            conn = self.rng.randrange(len(self.clients.connections))
            chan = self.rng.randrange(CHANNELS)
            name = self._step(conn, chan)
            self.clients.connections[conn].process_data_events(0)  # broker-sent cancels
            expected = self.model.take()
            _assert_same(expected, self.log.take(len(expected)), f"step {step} {name}")
        self.barrier()

    def barrier(self) -> None:
        """Every journal record so far is durable, and no stray event came after the last step
        (a delete-ok is sent only once the journal is durable; a missing exchange fires nothing).
        """
        channel = self.clients.channels[0][0]
        channel.exchange_delete("ev.never")
        _assert_same([], self.log.rest(), "after the last step")

    def _accessible(self, conn: int) -> list[str]:
        return sorted(n for n, q in self.model.queues.items() if q.owner in (None, conn))

    def _step(self, conn: int, chan: int) -> str:
        channel = self.clients.channels[conn][chan]
        operation = self.rng.choices(
            [
                self._declare_exchange,
                self._declare_queue,
                self._bind_queue,
                self._bind_exchange,
                self._unbind,
                self._delete_exchange,
                self._delete_queue,
                self._consume,
                self._cancel,
                self._close_channel,
                self._close_connection,
            ],
            weights=[6, 8, 14, 5, 8, 3, 4, 7, 4, 2, 1],
        )[0]
        return operation(conn, chan, channel)

    def _declare_exchange(self, conn: int, chan: int, channel) -> str:
        spec = self.rng.choice(EXCHANGES)
        channel.exchange_declare(
            spec.name, spec.type, durable=spec.durable, auto_delete=spec.auto_delete
        )
        self.model.declare_exchange(spec)
        return f"declare exchange {spec.name}"

    def _declare_queue(self, conn: int, chan: int, channel) -> str:
        spec = self.rng.choice(QUEUES)
        live = self.model.queues.get(spec.name)
        if live is not None and live.owner not in (None, conn):
            return "skip (exclusive elsewhere)"
        channel.queue_declare(
            spec.name, durable=spec.durable, exclusive=spec.exclusive, auto_delete=spec.auto_delete
        )
        self.model.declare_queue(spec, conn)
        return f"declare queue {spec.name}"

    def _binding_parts(self) -> tuple[str, str, dict]:
        sources = [*sorted(self.model.exchanges), "amq.direct", "amq.topic"]
        return self.rng.choice(sources), self.rng.choice(KEYS), self.rng.choice(ARGUMENTS)

    def _bind_queue(self, conn: int, chan: int, channel) -> str:
        queues = self._accessible(conn)
        if not queues:
            return "skip (no queue)"
        queue = self.rng.choice(queues)
        source, key, arguments = self._binding_parts()
        channel.queue_bind(queue, source, key, arguments=arguments)
        self.model.bind((source, queue, "queue", key, _args_key(arguments)))
        return f"bind {source} -> {queue} {key} {arguments}"

    def _bind_exchange(self, conn: int, chan: int, channel) -> str:
        destinations = sorted(self.model.exchanges)
        source, key, arguments = self._binding_parts()
        destinations = [d for d in destinations if d != source]
        if not destinations:
            return "skip (no exchange)"
        destination = self.rng.choice(destinations)
        channel.exchange_bind(destination, source, key, arguments=arguments)
        self.model.bind((source, destination, "exchange", key, _args_key(arguments)))
        return f"bind {source} -> exchange {destination} {key} {arguments}"

    def _unbind(self, conn: int, chan: int, channel) -> str:
        existing = sorted(
            b for b in self.model.bindings if b[2] == "exchange" or b[1] in self._accessible(conn)
        )
        if existing and self.rng.random() < 0.7:
            source, destination, kind, key, args = self.rng.choice(existing)
            arguments = json.loads(args)
        else:  # most likely a binding that does not exist
            queues = self._accessible(conn)
            if not queues:
                return "skip (no queue)"
            source, key, arguments = self._binding_parts()
            destination, kind = self.rng.choice(queues), "queue"
        if kind == "queue":
            channel.queue_unbind(destination, source, key, arguments=arguments)
        else:
            channel.exchange_unbind(destination, source, key, arguments=arguments)
        self.model.unbind((source, destination, kind, key, _args_key(arguments)))
        return f"unbind {source} -> {destination} {key} {arguments}"

    def _delete_exchange(self, conn: int, chan: int, channel) -> str:
        name = self.rng.choice(EXCHANGES).name
        channel.exchange_delete(name)
        self.model.delete_exchange(name)
        return f"delete exchange {name}"

    def _delete_queue(self, conn: int, chan: int, channel) -> str:
        name = self.rng.choice(QUEUES).name
        live = self.model.queues.get(name)
        if live is not None and live.owner not in (None, conn):
            return "skip (exclusive elsewhere)"
        channel.queue_delete(name)
        self.model.delete_queue(name)
        return f"delete queue {name}"

    def _consume(self, conn: int, chan: int, channel) -> str:
        queues = self._accessible(conn)
        if not queues:
            return "skip (no queue)"
        queue = self.rng.choice(queues)
        self.tags += 1
        tag = f"ev.ctag-{self.rng.random():.6f}-{self.tags}"
        channel.basic_consume(queue, _noop, auto_ack=True, consumer_tag=tag)
        self.model.consume(tag, queue, conn, chan)
        return f"consume {queue} {tag}"

    def _cancel(self, conn: int, chan: int, channel) -> str:
        consumers = self.model.consumers.items()
        tags = sorted(t for t, (_, c, ch) in consumers if (c, ch) == (conn, chan))
        if not tags:
            return "skip (no consumer)"
        tag = self.rng.choice(tags)
        channel.basic_cancel(tag)
        self.model.cancel(tag)
        return f"cancel {tag}"

    def _close_channel(self, conn: int, chan: int, channel) -> str:
        self.clients.reopen_channel(conn, chan)
        self.model.close_channel(conn, chan)
        return f"close channel {conn}/{chan}"

    def _close_connection(self, conn: int, chan: int, channel) -> str:
        self.clients.connections[conn].close()
        self.model.close_connection(conn, CHANNELS)
        self.clients.reopen(conn)
        return f"close connection {conn}"


# -- the tests -----------------------------------------------------------------------------------


def _lines_of(log: EventLog, event: str) -> list[dict]:
    return [line for line in log.lines if line["event"] == event]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_events_fire_once_per_change_and_once_per_recovered_entity(
    tmp_path: Path, seed: int
) -> None:
    events_path = tmp_path / "events.jsonl"
    args = ("--load-module", str(COUNTER), "--event-log", str(events_path))
    broker = broker_process(tmp_path, *args).start()
    log = EventLog(events_path)
    model = Model()
    rng = random.Random(seed)
    try:
        start = [("vhost_added", "/")] + [("exchange_declared", n, True) for n in STANDARD]
        _assert_same(start, log.take(len(start)), "start-up")
        clients = Clients(broker, 3)
        Round(model, clients, log, rng).run(150)
        assert all(line["active"] and line["same"] for line in log.lines[len(start) :])

        broker.kill()  # the clients' connections die with it: nothing more is expected
        broker.restart()
        recovered = model.recover()
        _assert_same(recovered, log.take(len(recovered)), "recovery")
        assert not any(line["active"] for line in log.lines[-len(recovered) :])
        assert all(line["same"] for line in log.lines[-len(recovered) :])

        clients = Clients(broker, 3)
        Round(model, clients, log, rng).run(100)  # unbinds and deletes of recovered state
        clients.close()
        for conn in range(3):
            model.close_connection(conn, CHANNELS)
        expected = model.take()
        _assert_same(expected, log.take(len(expected)), "closing the clients")
    finally:
        broker.stop()
    log.rest()
    OrderChecker().check(log.lines)
    removed = _lines_of(log, "binding_removed")
    assert removed and all(line["known"] for line in removed), "BindingEvent identity"


def test_deleting_a_vhost_fires_the_deletion_of_everything_in_it_then_vhost_deleted(
    tmp_path: Path,
) -> None:
    events_path = tmp_path / "events.jsonl"
    args = ("--load-module", str(COUNTER), "--event-log", str(events_path))
    broker = broker_process(tmp_path, *args).start()
    try:
        cli_ok(broker.url, "vhost", "add", "/v")
        cli_ok(broker.url, "permissions", "set", "guest", ".*", ".*", ".*", "--vhost", "/v")
        params = pika.ConnectionParameters("127.0.0.1", broker.port, "/v")
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.exchange_declare("ev.x", "fanout", durable=True)
        channel.exchange_bind("ev.x", "amq.direct", "k")
        channel.queue_declare("ev.q", durable=True)
        channel.queue_declare("ev.excl", exclusive=True)
        channel.queue_bind("ev.q", "ev.x", "")
        channel.basic_consume("ev.q", _noop, consumer_tag="ev.c")
        cli_ok(broker.url, "vhost", "delete", "/v")
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.process_data_events(1)  # the broker closed it (320)
    finally:
        broker.stop()
    lines = [line for line in EventLog(events_path).rest() if line["vhost"] == "/v"]
    OrderChecker().check(lines)
    deleted = lines[lines.index(next(ln for ln in lines if ln["event"] == "consumer_removed")) :]
    expected = [
        ("consumer_removed", "ev.q", "ev.c"),
        ("queue_deleted", "ev.excl", False),
        ("queue_deleted", "ev.q", True),
        ("binding_removed", "ev.x", "ev.q", "queue", "", "{}"),
        ("binding_removed", "amq.direct", "ev.x", "exchange", "k", "{}"),
        ("exchange_deleted", "ev.x", True),
        *[("exchange_deleted", name, True) for name in STANDARD],
        ("vhost_deleted", "/v"),
    ]
    _assert_same(expected, deleted, "vhost deletion")
    assert deleted[-1]["event"] == "vhost_deleted" and deleted[-1]["broker_matches"]


def test_a_failing_event_hook_is_logged_and_the_client_goes_on(tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    args = ("--load-module", str(RAISER), "--load-module", str(COUNTER))
    broker = broker_process(tmp_path, *args, "--event-log", str(events_path)).start()
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", broker.port))
        channel = connection.channel()
        channel.queue_declare("boom.q")
        channel.queue_bind("boom.q", "amq.direct", "boom")
        tag = channel.basic_consume("boom.q", _noop, auto_ack=True)
        channel.basic_cancel(tag)
        channel.basic_publish("amq.direct", "boom", b"still served")
        _, _, body = channel.basic_get("boom.q", auto_ack=True)
        assert body == b"still served"
        assert channel.queue_delete("boom.q").method.NAME == "Queue.DeleteOk"
        assert connection.is_open and channel.is_open
        connection.close()
    finally:
        broker.stop()
    failures = [e for e in broker.events() if e.get("event") == "plugin_event_failed"]
    assert [(e["plugin"], e["hook"]) for e in failures] == [
        ("plugmq_file_plugin_event_raiser", name)
        for name in (
            "plugmq_vhost_added",  # at start-up: the broker started all the same
            "plugmq_queue_declared",
            "plugmq_binding_added",
            "plugmq_consumer_added",
            "plugmq_queue_deleted",
        )
    ]
    assert all("EventHookError" in e["exception"] for e in failures)
    recorded = [json.loads(line)["event"] for line in events_path.read_text().splitlines()]
    boom = [e for e in recorded if e.endswith(("declared", "added", "deleted", "removed"))]
    for event in (
        "vhost_added",
        "queue_declared",
        "binding_added",
        "consumer_added",
        "queue_deleted",
    ):
        assert event in boom, f"the other plugin still got {event}"


def test_a_wrapper_on_an_event_hook_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "wrapping.py"
    path.write_text(
        "from plugmq.hookspecs import hookimpl\n"
        "@hookimpl(wrapper=True)\n"
        "def plugmq_queue_declared(vhost, queue):\n"
        "    return (yield)\n"
    )
    wrapper = r"plugmq_file_plugin_wrapping\.plugmq_queue_declared"
    with pytest.raises(PluginLoadError, match=wrapper):
        PluginManager().load([str(path)], autoload=False)


def test_binding_events_are_equal_by_amqp_binding_identity() -> None:
    one = BindingEvent("x", "q", "queue", "k", MappingProxyType({"a": 1, "b": "2"}))
    same = BindingEvent("x", "q", "queue", "k", {"b": "2", "a": 1})
    typed = BindingEvent("x", "q", "queue", "k", {"a": True, "b": "2"})
    to_exchange = BindingEvent("x", "q", "exchange", "k", {"a": 1, "b": "2"})
    assert one == same and hash(one) == hash(same)
    assert len({one, same, typed, to_exchange}) == 3
