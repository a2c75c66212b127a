"""Worker processes: producers, consumers and idle-connection openers, each on its own trio loop.

A scenario starts its workers with :func:`start_worker` (``multiprocessing``'s *spawn*
context: a fresh interpreter, no state inherited from the parent). Workers and parent share
one array of 64-bit counters (:class:`Board`): the parent writes the control word, workers
write their ready flag and their progress counters, which the parent samples for progress
and the measurement window and producers read for flow control (messages in flight). Each
worker sends one result dict back over a pipe when it finishes.

Hot loops never touch the shared array per message: a per-worker *ticker* task copies local
counts to it and reads the control word every few milliseconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import struct
import time
import traceback
from array import array
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from plugmq.client import connect
from plugmq.logging import configure_logging

# Control word values (board slot 0).
WAIT = 0
RUN = 1
STOP_PRODUCING = 2
STOP_CONSUMING = 3
STOP = 4

_TICK = 0.005
_STAMP = struct.Struct(">q")
_SETTLE_TIMEOUT = 10.0


@dataclass
class Board:
    """The layout of the shared counter array.

    Slots: 0 control word, 1 "measuring" flag (latency samples are kept only while it is 1),
    then one ready flag per worker, two counters per producer (sent, confirmed) and one
    counter per queue (messages consumed from it).
    """

    workers: int
    producers: int
    queues: int

    CONTROL = 0
    MEASURING = 1

    @property
    def size(self) -> int:
        """Number of slots."""
        return 2 + self.workers + 2 * self.producers + self.queues

    def ready(self, worker: int) -> int:
        """Slot of worker ``worker``'s ready flag."""
        return 2 + worker

    def sent(self, producer: int) -> int:
        """Slot of producer ``producer``'s sent count."""
        return 2 + self.workers + 2 * producer

    def confirmed(self, producer: int) -> int:
        """Slot of producer ``producer``'s confirmed count."""
        return self.sent(producer) + 1

    def consumed(self, queue: int) -> int:
        """Slot of the consumed count of queue ``queue``."""
        return 2 + self.workers + 2 * self.producers + queue


@dataclass
class WorkerSpec:
    """What one worker process does (picklable; sent to the spawned process)."""

    role: str
    """``producer``, ``consumer`` or ``connections``."""
    url: str
    board: Board
    worker: int
    # producer
    producer: int = 0
    exchange: str = ""
    routing_keys: Sequence[str] = ("",)
    size: int = 100
    persistent: bool = False
    confirm_window: int = 0
    rate: float = 0.0
    max_inflight: int = 0
    deliveries_per_message: float = 1.0
    count: int = 0
    # consumer
    queues: Sequence[str] = ()
    queue_slots: Sequence[int] = ()
    no_ack: bool = False
    prefetch: int = 100
    latency: bool = False
    per_key: bool = False
    # connections
    connections: int = 0
    concurrency: int = 20
    extra: dict[str, Any] = field(default_factory=dict)


def start_worker(
    spec: WorkerSpec, shared: Any
) -> tuple[Any, multiprocessing.connection.Connection]:
    """Start a worker process for ``spec``; return it and the pipe its result arrives on."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=worker_main, args=(spec, shared, sender), name=f"perf-{spec.role}", daemon=True
    )
    process.start()
    sender.close()
    return process, receiver


def worker_main(spec: WorkerSpec, shared: Any, pipe: multiprocessing.connection.Connection) -> None:
    """Entry point of a worker process: run its role, send the result (or the error)."""
    configure_logging("warning")
    try:
        runner = {"producer": _producer, "consumer": _consumer, "connections": _connections}
        result = trio.run(runner[spec.role], spec, shared)
    except BaseException as error:  # reported to the parent, which fails the scenario
        result = {"error": f"{spec.role}: {error!r}", "traceback": traceback.format_exc()}
    with contextlib.suppress(OSError):
        pipe.send(result)
    pipe.close()


async def _wait_for_control(shared: Any, *states: int) -> int:
    while shared[Board.CONTROL] not in states:
        await trio.sleep(_TICK)
    return shared[Board.CONTROL]


# ------------------------------------------------------------------------------------------------
# Producer
# ------------------------------------------------------------------------------------------------


class _ProducerState:
    __slots__ = ("confirmed", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.confirmed = 0


def _body(size: int) -> bytearray:
    """A body of ``size`` bytes (at least the 8 of the send timestamp)."""
    return bytearray(b"p" * max(size, _STAMP.size))


async def _producer(spec: WorkerSpec, shared: Any) -> dict[str, Any]:
    board = spec.board
    state = _ProducerState()
    properties = {"delivery_mode": 2} if spec.persistent else None
    async with (
        connect(spec.url, connection_name=f"perf-producer-{spec.producer}") as conn,
        conn.channel() as channel,
    ):
        if spec.confirm_window:
            await channel.confirm_select()
        shared[board.ready(spec.worker)] = 1
        await _wait_for_control(shared, RUN, STOP_PRODUCING, STOP_CONSUMING, STOP)
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            ticker = nursery.cancel_scope
            nursery.start_soon(_producer_ticker, spec, shared, state)
            if spec.confirm_window:
                async with trio.open_nursery() as publishers:
                    for _ in range(spec.confirm_window):
                        publishers.start_soon(
                            _publish_confirmed, spec, shared, state, channel, properties
                        )
            else:
                await _publish_loop(spec, shared, state, channel, properties)
            ticker.cancel()
        elapsed = time.monotonic() - started
        shared[board.sent(spec.producer)] = state.sent
        shared[board.confirmed(spec.producer)] = state.confirmed
    return {
        "role": "producer",
        "sent": state.sent,
        "confirmed": state.confirmed,
        "elapsed": elapsed,
    }


async def _producer_ticker(spec: WorkerSpec, shared: Any, state: _ProducerState) -> None:
    sent_slot, confirmed_slot = spec.board.sent(spec.producer), spec.board.confirmed(spec.producer)
    while True:
        shared[sent_slot] = state.sent
        shared[confirmed_slot] = state.confirmed
        await trio.sleep(_TICK)


def _running(spec: WorkerSpec, shared: Any, state: _ProducerState) -> bool:
    if spec.count and state.sent >= spec.count:
        return False
    return shared[Board.CONTROL] == RUN


class _FlowControl:
    """How many more messages the producer may publish now (messages in flight bound)."""

    def __init__(self, spec: WorkerSpec, shared: Any) -> None:
        self._shared = shared
        self._slots = [spec.board.consumed(q) for q in range(spec.board.queues)]
        self._limit = spec.max_inflight
        self._per_message = spec.deliveries_per_message or 1.0

    def allowance(self, sent: int) -> int:
        if not self._limit or not self._slots:
            return 1 << 30
        consumed = sum(self._shared[slot] for slot in self._slots)
        return self._limit - (sent - int(consumed / self._per_message))


async def _publish_loop(
    spec: WorkerSpec, shared: Any, state: _ProducerState, channel: Any, properties: Any
) -> None:
    """Publish as fast as flow control allows, or at ``spec.rate`` messages per second."""
    keys = list(spec.routing_keys)
    nkeys = len(keys)
    exchange = spec.exchange
    body = _body(spec.size)
    stamp = _STAMP.pack_into
    now_ns = time.monotonic_ns
    publish = channel.publish
    flow = _FlowControl(spec, shared)
    batch = 50
    started = time.monotonic()
    tick = max(1.0 / spec.rate, 0.001) if spec.rate else 0.0
    next_tick = started
    while _running(spec, shared, state):
        if spec.rate:
            next_tick += tick
            await trio.sleep_until(trio.current_time() + max(0.0, next_tick - time.monotonic()))
            todo = int((time.monotonic() - started) * spec.rate) - state.sent
        else:
            todo = min(batch, flow.allowance(state.sent))
            if todo <= 0:
                await trio.sleep(0.001)
                continue
        if spec.count:
            todo = min(todo, spec.count - state.sent)
        sent = state.sent
        for _ in range(todo):
            stamp(body, 0, now_ns())
            await publish(exchange, keys[sent % nkeys], bytes(body), properties)
            sent += 1
            state.sent = sent


async def _publish_confirmed(
    spec: WorkerSpec, shared: Any, state: _ProducerState, channel: Any, properties: Any
) -> None:
    """One of ``confirm_window`` tasks, each with one unconfirmed publish at a time."""
    keys = list(spec.routing_keys)
    body = _body(spec.size)
    flow = _FlowControl(spec, shared)
    while _running(spec, shared, state):
        if flow.allowance(state.sent) <= 0:
            await trio.sleep(0.001)
            continue
        key = keys[state.sent % len(keys)]
        state.sent += 1
        _STAMP.pack_into(body, 0, time.monotonic_ns())
        await channel.publish_confirmed(spec.exchange, key, bytes(body), properties)
        state.confirmed += 1


# ------------------------------------------------------------------------------------------------
# Consumer
# ------------------------------------------------------------------------------------------------


class _QueueState:
    __slots__ = ("consumed", "per_key", "samples", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.consumed = 0
        self.samples = array("q")
        self.per_key: defaultdict[str, int] = defaultdict(int)


async def _consumer(spec: WorkerSpec, shared: Any) -> dict[str, Any]:
    states = [_QueueState() for _ in spec.queues]
    ready = [0]
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for queue, state in zip(spec.queues, states, strict=True):
            nursery.start_soon(_consume_queue, spec, shared, queue, state, ready)
        nursery.start_soon(_consumer_ticker, spec, shared, states, ready)
    samples = array("q")
    for state in states:
        samples.extend(state.samples)
    return {
        "role": "consumer",
        "consumed": [state.consumed for state in states],
        "per_key": [dict(state.per_key) for state in states] if spec.per_key else None,
        "latency_ns": samples.tobytes() if spec.latency else None,
        "elapsed": time.monotonic() - started,
    }


async def _consumer_ticker(
    spec: WorkerSpec,
    shared: Any,
    states: list[_QueueState],
    ready: list[int],
) -> None:
    slots = list(spec.queue_slots)
    ready_marked = False
    while True:
        for slot, state in zip(slots, states, strict=True):
            shared[slot] = state.consumed
        if not ready_marked and ready[0] == len(states):
            shared[spec.board.ready(spec.worker)] = 1
            ready_marked = True
        if shared[Board.CONTROL] >= STOP_CONSUMING:
            for slot, state in zip(slots, states, strict=True):
                shared[slot] = state.consumed
                state.scope.cancel()
            return
        await trio.sleep(_TICK)


async def _consume_queue(
    spec: WorkerSpec, shared: Any, queue: str, state: _QueueState, ready: list[int]
) -> None:
    """Consume ``queue`` on a connection of its own until the ticker cancels the loop."""
    unpack = _STAMP.unpack_from
    now_ns = time.monotonic_ns
    samples = state.samples
    per_key = state.per_key
    latency, count_keys, no_ack = spec.latency, spec.per_key, spec.no_ack
    async with connect(spec.url, connection_name=f"perf-consumer-{queue}") as conn:
        channel = await conn.open_channel()
        prefetch = None if no_ack else spec.prefetch
        async with channel.consume(queue, no_ack=no_ack, prefetch=prefetch) as consumer:
            ready[0] += 1
            # only the loop is cancelled (by the ticker): basic.cancel and the connection's
            # close still happen cleanly afterwards
            with state.scope:
                async for message in consumer:
                    if latency and shared[Board.MEASURING]:
                        samples.append(now_ns() - unpack(message.body)[0])
                    if count_keys:
                        per_key[message.routing_key] += 1
                    if not no_ack:
                        await message.ack()
                    state.consumed += 1


# ------------------------------------------------------------------------------------------------
# Idle connections
# ------------------------------------------------------------------------------------------------


async def _connections(spec: WorkerSpec, shared: Any) -> dict[str, Any]:
    """Open ``spec.connections`` connections with one channel each; hold them until STOP."""
    opened: list[float] = []
    failures: list[str] = []
    limiter = trio.CapacityLimiter(spec.concurrency)
    all_open = trio.Event()
    release = trio.Event()
    done = [0]

    async def hold(index: int) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with limiter:  # bounds connections being opened, not held
                    begun = time.perf_counter()
                    conn = await stack.enter_async_context(
                        connect(spec.url, connection_name=f"perf-idle-{index}", close_timeout=5)
                    )
                    channel = await conn.open_channel()
                    opened.append(time.perf_counter() - begun)
                _finish_one()
                await release.wait()
                with trio.move_on_after(5):
                    await channel.close()
        except Exception as error:  # counted and reported; the others carry on
            failures.append(repr(error))
            _finish_one()

    def _finish_one() -> None:
        done[0] += 1
        if done[0] == spec.connections:
            all_open.set()

    await _wait_for_control(shared, RUN, STOP)
    begun = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for index in range(spec.connections):
            nursery.start_soon(hold, index)
        await all_open.wait()
        total = time.perf_counter() - begun
        shared[spec.board.consumed(0)] = len(opened)
        shared[spec.board.ready(spec.worker)] = 1
        await _wait_for_control(shared, STOP)
        release.set()
    return {
        "role": "connections",
        "opened": len(opened),
        "failed": len(failures),
        "failures": failures[:5],
        "open_total_s": total,
        "open_times_s": opened,
    }
