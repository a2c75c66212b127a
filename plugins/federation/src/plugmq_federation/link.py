"""Links: the connection of one route to its remote broker, kept up forever.

A link dials the remote broker's URL list through :mod:`plugmq.client` and the broker's
dialer hook (any transport), runs the route's bridge over it, and when anything fails
records why, waits (1 s, doubling up to 30 s) and dials again, forever, until its route is
deleted or the broker stops being master (links run inside a service, cancelled on fencing).
Its state is what ``plugmq link list`` shows.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
import trio

from plugmq.amqp.errors import AMQPError
from plugmq.client import (
    AMQPClientError,
    ChannelClosed,
    ConnectionClosed,
    ConnectionFailed,
    connect,
)
from plugmq.inbroker import InBrokerClient, open_internal_client
from plugmq_federation.bridges import (
    pull_queue_name,
    push_queue_name,
    run_demand,
    run_dynamic,
    run_pull,
    run_push,
)
from plugmq_federation.dedup import InDoubt
from plugmq_federation.hops import Verdict

if TYPE_CHECKING:
    from plugmq_federation.dedup import DuplicateWindow
    from plugmq_federation.durable_window import WindowJournal
    from plugmq_federation.routes import Route

log = structlog.get_logger("plugmq.federation")

#: The server property a federating broker announces its id in.
ID_PROPERTY = "plugmq_federation_broker_id"
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
CONNECT_TIMEOUT = 5.0
HEARTBEAT = 10
#: At least this many recently stored messages are remembered as possibly unacknowledged.
IN_DOUBT_MIN = 4096
#: Refused pushed messages remembered until their resend (the oldest go first).
REFUSED_KEPT = 65536
#: Seconds between two reads of a pull link's remote queue depth.
BACKLOG_EVERY = 2.0


_BRIDGES = {
    ("exchange", False): run_pull,
    ("exchange", True): run_push,
    ("queue", False): run_pull,
    ("dynamic", False): run_dynamic,
    ("demand", False): run_demand,
}


class LinkError(Exception):
    """A link cannot work as configured (the message is shown in ``link list``)."""


class Link:
    """The link of one route: reconnects with backoff and counts what it forwards."""

    def __init__(
        self,
        route: Route,
        broker: Any,
        local_id: str,
        window: DuplicateWindow,
        journal: WindowJournal | None = None,
    ) -> None:
        self.route = route
        self.broker = broker
        self.local_id = local_id
        self.local_id_bytes = local_id.encode()
        self.window = window
        #: Journals the keys this link admits (the window survives failover), if any.
        self.journal = journal
        #: Keys of messages stored lately, whose acks the remote may not have had.
        self.in_doubt = InDoubt(max(4 * route.ack, IN_DOUBT_MIN))
        self.remote_id = ""
        self.remote_id_bytes = b""
        self.remote_url = ""
        self.remote_queue = ""
        self.remote_backlog: int | None = None
        #: The (key, path) bindings a dynamic route made on its remote queue; None until the
        #: first session has cleared what an earlier life of the route left there.
        self.remote_bindings: set[tuple[str, str]] | None = None
        #: Whether a push link publishes through the destination's ingress (None: not yet).
        self.ingress: bool | None = None
        #: (header, body) of pushed messages DEST refused: their resend is not a copy.
        self.refused_copies: dict[tuple[bytes, bytes], None] = {}
        self.state = "connecting"
        self.last_error = ""
        self.attempts = 0
        self.forwarded = 0
        self.refused = 0
        self.drops = {verdict: 0 for verdict in Verdict}
        self.rate = 0.0
        self._rate_mark = (time.monotonic(), 0)
        #: Set once the first attempt succeeded or failed (``route add`` reports it).
        self.first_outcome = trio.Event()
        self.cancel_scope = trio.CancelScope()
        #: Set to cut a wait between two attempts short (a group announced a new master).
        self._wake = trio.Event()

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, forward, and on failure wait and connect again, until cancelled."""
        delay = FIRST_DELAY
        with self.cancel_scope:
            while True:
                self.state = "connecting"
                self.attempts += 1
                started = time.monotonic()
                try:
                    await self._session()
                except LinkError as error:
                    self._down(str(error))
                except ConnectionFailed as error:
                    self._down(_attempts(error))
                except (ConnectionClosed, ChannelClosed) as error:
                    self._down(f"{error.reply_code} {error.reply_text}")
                except (AMQPClientError, OSError) as error:
                    self._down(str(error) or type(error).__name__)
                except Exception as error:  # the link must outlive any failure: record it
                    log.exception("federation_link_failed", route=self.route.id)
                    self._down(f"{type(error).__name__}: {error}")
                if time.monotonic() - started > MAX_DELAY:
                    delay = FIRST_DELAY  # it was up a while: this is a new failure
                with trio.move_on_after(delay):
                    await self._wake.wait()
                if self._wake.is_set():
                    self._wake = trio.Event()
                    delay = FIRST_DELAY  # somewhere new to go: no reason to back off
                else:
                    delay = min(delay * 2, MAX_DELAY)

    async def _session(self) -> None:
        route = self.route
        async with connect(
            list(route.remote),
            dialer_for=self.broker.plugins.dialer_for,
            connect_timeout=CONNECT_TIMEOUT,
            heartbeat=HEARTBEAT,
            connection_name=f"plugmq federation {self.local_id} route {route.id}",
        ) as connection:
            self._identify(connection.server_properties, str(connection.url))
            local = self._local_client()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch, connection)
                    if not route.push:
                        nursery.start_soon(self._sample_backlog, connection)
                    bridge = _BRIDGES[route.kind, route.push]
                    await bridge(self, connection, local)
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # One failing task is the usual case: raise it bare so run() can name it.
                if len(group.exceptions) != 1:
                    raise
                raise group.exceptions[0] from None
            finally:
                local.close()  # requeues what the bridge held unsettled
        raise ConnectionClosed(0, "the remote broker ended the federation consumer")

    async def _sample_backlog(self, connection: Any) -> None:
        """Read the remote queue's depth now and then (``link list`` shows it as backlog).

        A passive declare on a channel of its own: a 404 closes that channel, not the
        bridge's (the queue may not be declared yet).
        """
        queue = self.source_queue()
        while True:
            try:
                async with connection.channel() as channel:
                    while True:
                        declared = await channel.queue_declare(queue, passive=True)
                        self.remote_backlog = declared.message_count
                        await trio.sleep(BACKLOG_EVERY)
            except ChannelClosed:
                self.remote_backlog = None
                await trio.sleep(BACKLOG_EVERY)

    def _identify(self, properties: dict[str, Any], url: str) -> None:
        remote_id = properties.get(ID_PROPERTY)
        if isinstance(remote_id, bytes):
            remote_id = remote_id.decode()
        self.remote_id = remote_id or url  # a broker without federation: its URL names it
        self.remote_id_bytes = self.remote_id.encode()
        self.remote_url = url
        if self.remote_id == self.local_id:
            raise LinkError(
                f"broker id collision: {url} has this broker's id '{self.local_id}' "
                "(give each broker its own --broker-id)"
            )

    def _local_client(self) -> InBrokerClient:
        try:
            return open_internal_client(self.broker, self.route.vhost)
        except AMQPError as error:  # NoSuchVHost (403): reported, retried
            raise LinkError(f"local vhost '{self.route.vhost}': {error}") from error

    def wake(self) -> None:
        """Try again now if waiting between attempts (the remote group has a new master)."""
        self._wake.set()

    # -- state ---------------------------------------------------------------------------------

    def up(self) -> None:
        """The bridge is forwarding (called by it once its consumer is in place)."""
        was = self.state
        self.state = "up"
        self.last_error = ""
        self.first_outcome.set()
        if was in ("up", "idle"):
            return
        log.info(
            "federation_link_up", route=self.route.id, remote=self.remote_url, peer=self.remote_id
        )

    def _down(self, error: str) -> None:
        self.state = "down"
        self.last_error = error
        self.first_outcome.set()
        log.warning("federation_link_down", route=self.route.id, error=error)

    def dropped(self, verdict: Verdict) -> None:
        """A message was not forwarded (loop, hop limit, duplicate)."""
        self.drops[verdict] += 1

    def refused_copy(self, header: bytes, body: bytes) -> None:
        """DEST refused this pushed message: its resend must get past DEST's window."""
        copies = self.refused_copies
        copies[header, body] = None
        if len(copies) > REFUSED_KEPT:
            del copies[next(iter(copies))]  # the oldest: its resend was long ago

    def resending_refused(self, delivery: Any) -> bool:
        """True (forgetting it) when ``delivery`` is the resend of a message DEST refused."""
        identity = (delivery.header, delivery.body)
        if identity not in self.refused_copies:
            return False
        del self.refused_copies[identity]
        return True

    def describe(self, backlog: int | None = None) -> dict[str, Any]:
        """The link's state for ``link list``."""
        now = time.monotonic()
        mark, count = self._rate_mark
        if now - mark >= 1.0:
            self.rate = (self.forwarded - count) / (now - mark)
            self._rate_mark = (now, self.forwarded)
        route = self.route
        return {
            "route": route.id,
            "direction": route.direction,
            "remote": route.remote_display,
            "peer": self.remote_id,
            "exchange": route.exchange,
            "key": route.queue if route.kind in ("queue", "demand") else route.key,
            "state": self.state,
            "last_error": self.last_error,
            "attempts": self.attempts,
            "forwarded": self.forwarded,
            "refused": self.refused,
            "loops": self.drops[Verdict.LOOP],
            "hop_limited": self.drops[Verdict.MAX_HOPS],
            "duplicates": self.drops[Verdict.DUPLICATE],
            "backlog": self.remote_backlog if backlog is None else backlog,
            "rate": round(self.rate, 1),
            "ingress": self.ingress,
        }

    def source_queue(self) -> str:
        """The queue the route drains (remote for pull, local for push)."""
        if self.route.push:
            return push_queue_name(self.route.id)
        return self.route.queue or pull_queue_name(self.local_id, self.route.id)


async def _watch(connection: Any) -> None:
    """Raise the connection's error when it drops (a push bridge waits on local queues)."""
    raise await connection.wait_disconnected()


def _attempts(error: ConnectionFailed) -> str:
    """Each URL tried and why it failed, on one line."""
    parts = []
    for url, cause in error.errors:
        if isinstance(cause, ConnectionClosed):
            reason = f"{cause.reply_code} {cause.reply_text}"
        elif isinstance(cause, trio.TooSlowError):
            reason = "timed out"
        elif isinstance(cause, OSError):
            reason = cause.strerror or str(cause) or type(cause).__name__
        else:
            reason = str(cause) or type(cause).__name__
        parts.append(f"{url}: {reason}")
    return "cannot connect: " + "; ".join(parts)
