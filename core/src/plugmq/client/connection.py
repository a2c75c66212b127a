"""Client connections: URL-list failover, optional reconnection, channels.

:func:`connect` is the entry point. It owns a nursery for the connection's tasks (reader,
writer, heartbeats, the reconnect supervisor), so nothing outlives the ``async with`` block.

Failover: the URLs are tried in order until one connects (dial + handshake within
``connect_timeout`` each). With ``reconnect=True`` a lost connection is re-dialed, starting
with the URL after the one that failed, cycling through the list with a growing delay.

Server-driven failover (docs/failover.md): the list grows with the group members a broker
advertises in its ``cluster_urls`` server property, and a broker that refuses with a close
naming the master (:data:`~plugmq.client.urls.MASTER_REDIRECT_MARKER`) sends the client to
that URL at once, in the same round, without the reconnect delay. Learned URLs keep the user,
password and vhost of the URL that led to them (:func:`~plugmq.client.urls.adopt_url`).
Channels do not survive a reconnect: calls on them raise :class:`ConnectionClosed`; wait with
:meth:`ClientConnection.wait_connected` and open new ones (redeclaring what they need).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog
import trio

from plugmq.amqp.errors import AMQPError
from plugmq.client.channel import ClientChannel
from plugmq.client.errors import (
    AMQPClientError,
    ConnectionClosed,
    ConnectionFailed,
)
from plugmq.client.handshake import Limits, handshake
from plugmq.client.session import TRANSPORT_ERRORS, Session
from plugmq.client.tcp import TCPDialer
from plugmq.client.urls import (
    CLUSTER_URLS_PROPERTY,
    BrokerURL,
    adopt_url,
    parse_url,
    redirect_target,
    same_broker,
)

if TYPE_CHECKING:
    from plugmq.transport import Dialer

log = structlog.get_logger("plugmq.client")

DialerFor = Callable[[str], "Dialer | None"]

#: What a failed attempt on one URL may raise; anything else is a bug and propagates.
_ATTEMPT_ERRORS = (*TRANSPORT_ERRORS, trio.TooSlowError, AMQPClientError, AMQPError)


def resolve_dialer(
    scheme: str, dialers: Mapping[str, Dialer] | None, dialer_for: DialerFor | None
) -> Dialer:
    """The dialer for ``scheme``: ``dialers`` first, then ``dialer_for``, then TCP for amqp."""
    if dialers and scheme in dialers:
        return dialers[scheme]
    if dialer_for is not None:
        dialer = dialer_for(scheme)
        if dialer is not None:
            return dialer
    if scheme == "amqp":
        return TCPDialer()
    raise ValueError(f"no dialer for URL scheme {scheme!r}: pass dialers= or dialer_for=")


class ClientConnection:
    """A connection to one broker of a list. Create it with :func:`connect`.

    Attributes of the live connection (``url``, ``heartbeat``, ``frame_max``,
    ``channel_max``, ``server_properties``, ``blocked``) describe the current broker and
    change after a reconnect. ``urls`` is the failover list: the URLs given, then those
    learned from brokers (``cluster_urls``, redirects), in the order they were learned.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        heartbeat: int | None = None,
        connect_timeout: float = 10.0,
        reconnect: bool = False,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 30.0,
        frame_max: int | None = None,
        channel_max: int | None = None,
        connection_name: str | None = None,
        close_timeout: float = 5.0,
        dialers: Mapping[str, Dialer] | None = None,
        dialer_for: DialerFor | None = None,
    ) -> None:
        self.urls = [parse_url(url) for url in ([urls] if isinstance(urls, str) else urls)]
        if not self.urls:
            raise ValueError("connect() needs at least one broker URL")
        self._dialer_sources = (dialers, dialer_for)
        self._dialers = {
            url.scheme: resolve_dialer(url.scheme, dialers, dialer_for) for url in self.urls
        }
        self._limits = Limits(heartbeat, frame_max, channel_max, connection_name)
        self._connect_timeout = connect_timeout
        self._reconnect = reconnect
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._close_timeout = close_timeout
        self._session: Session | None = None
        self._url_index = 0
        self._closing = False
        self._finished = False
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    # ----------------------------------------------------------------------------------------
    # Properties of the live connection
    # ----------------------------------------------------------------------------------------

    def _live(self) -> Session:
        if self._session is None:
            raise ConnectionClosed(0, "not connected")
        return self._session

    @property
    def is_connected(self) -> bool:
        """True while a negotiated connection is up."""
        return self._session is not None and self._session.alive

    @property
    def url(self) -> BrokerURL:
        """The broker URL of the current (or last) connection."""
        return self._live().url

    @property
    def heartbeat(self) -> int:
        """The negotiated heartbeat interval in seconds (0: off)."""
        return self._live().heartbeat

    @property
    def frame_max(self) -> int:
        """The negotiated maximum frame size."""
        return self._live().frame_max

    @property
    def channel_max(self) -> int:
        """The negotiated highest channel number."""
        return self._live().channel_max

    @property
    def server_properties(self) -> dict[str, Any]:
        """The broker's connection.start properties (product, version, capabilities)."""
        return self._live().server_properties

    @property
    def blocked(self) -> bool:
        """True while the broker blocks publishers (connection.blocked); publish waits."""
        return self._live().blocked_reason is not None

    @property
    def blocked_reason(self) -> str | None:
        """The reason the broker gave in connection.blocked, None when not blocked."""
        return self._live().blocked_reason

    async def wait_unblocked(self) -> None:
        """Return when the broker does not block publishers."""
        await self._live().wait_unblocked()

    # ----------------------------------------------------------------------------------------
    # Connecting
    # ----------------------------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery, session: Session) -> None:
        """Hand the first connected ``session`` to a supervisor task in ``nursery``."""
        self._nursery = nursery
        await nursery.start(self._supervise, session)

    async def _connect_round(self, start: int) -> Session:
        """Try every URL once, beginning at index ``start``; raise :class:`ConnectionFailed`.

        A refusal naming the master puts the master's URL first in line (once per round, so
        two brokers naming each other cannot loop).
        """
        errors: list[tuple[str, BaseException]] = []
        count = len(self.urls)
        order = deque((start + offset) % count for offset in range(count))
        tried: set[int] = set()
        while order:
            index = order.popleft()
            if index in tried:
                continue
            tried.add(index)
            url = self.urls[index]
            try:
                session = await self._attempt(url)
            except _ATTEMPT_ERRORS as error:
                log.info("connect attempt failed", url=str(url), error=repr(error))
                errors.append((str(url), error))
                redirect = self._redirect_index(error, url)
                if redirect is not None and redirect not in tried:
                    log.info("following redirect", url=str(url), master=str(self.urls[redirect]))
                    order.appendleft(redirect)
                continue
            self._url_index = index
            self._learn_members(session)
            return session
        raise ConnectionFailed(errors)

    def _redirect_index(self, error: BaseException | None, url: BrokerURL) -> int | None:
        """The list index of the master a close ``error`` names (added if new), or None."""
        if not isinstance(error, ConnectionClosed):
            return None
        target = redirect_target(error.reply_text)
        if target is None:
            return None
        return self._add_url(adopt_url(target, url))

    def _learn_members(self, session: Session) -> None:
        """Add the group members the broker advertises (``cluster_urls``) to the list."""
        advertised = session.server_properties.get(CLUSTER_URLS_PROPERTY)
        if not isinstance(advertised, list | tuple):
            return
        count = len(self.urls)
        for member in advertised:
            if isinstance(member, str | bytes):
                self._add_url(adopt_url(member, session.url))
        if len(self.urls) > count:
            log.info("failover urls learned", added=[str(url) for url in self.urls[count:]])

    def _add_url(self, url: BrokerURL | None) -> int | None:
        """The index of ``url`` in the list, appending it when new; None when not dialable."""
        if url is None:
            return None
        for index, known in enumerate(self.urls):
            if same_broker(known, url):
                return index
        if url.scheme not in self._dialers:
            try:
                self._dialers[url.scheme] = resolve_dialer(url.scheme, *self._dialer_sources)
            except ValueError:
                log.warning("ignoring a broker URL without a dialer", url=str(url))
                return None
        self.urls.append(url)
        return len(self.urls) - 1

    async def _attempt(self, url: BrokerURL) -> Session:
        """Dial ``url`` and negotiate, within ``connect_timeout``."""
        with trio.fail_after(self._connect_timeout):
            stream = await self._dialers[url.scheme].dial(url.host, url.port)
            try:
                tuning = await handshake(stream, url, self._limits)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        log.debug("connected", url=str(url), heartbeat=tuning.heartbeat, frame_max=tuning.frame_max)
        return Session(stream, url, tuning)

    async def _supervise(
        self, session: Session, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run sessions one after the other: the first, then reconnections if enabled."""
        self._set_session(session)
        task_status.started()
        while True:
            await session.run()
            if self._closing or not self._reconnect:
                break
            log.warning(
                "connection lost; reconnecting", url=str(session.url), reason=str(session.error)
            )
            self._notify()
            session = await self._redial(self._redirect_index(session.error, session.url))
            self._set_session(session)
        self._finished = True
        self._notify()

    async def _redial(self, first: int | None) -> Session:
        """Connect again: from ``first`` (the master a closing broker named), else from the
        URL after the lost one; rounds repeat with a growing delay."""
        delay = self._reconnect_delay
        start = first if first is not None else self._url_index + 1
        while True:
            try:
                return await self._connect_round(start)
            except ConnectionFailed as error:
                log.warning("reconnect round failed", error=str(error), retry_in=delay)
            await trio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_delay)
            start = self._url_index + 1

    def _set_session(self, session: Session) -> None:
        self._session = session
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_connected(self) -> None:
        """Wait until a connection is up (after a failover); raise if it never will be."""
        while not self.is_connected:
            if self._finished or self._closing:
                raise self._closed_error()
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_disconnected(self) -> ConnectionClosed:
        """Wait until the current connection ends; return why (the error calls now raise).

        Returns at once when not connected. Useful to watch a link (federation, HA).
        """
        session = self._session
        if session is not None:
            await session.done.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._closed_error()

    def _closed_error(self) -> ConnectionClosed:
        if self._session is not None and self._session.error is not None:
            return self._session.error.again()
        return ConnectionClosed(0, "connection closed")

    # ----------------------------------------------------------------------------------------
    # Channels and closing
    # ----------------------------------------------------------------------------------------

    async def open_channel(
        self,
        *,
        on_return: Callable[[Any], None] | None = None,
        returns_buffer: int = 1024,
    ) -> ClientChannel:
        """Open a channel that you close yourself with ``await ch.close()``.

        With ``reconnect=True`` this waits for a connection to be up first.
        """
        if self._reconnect:
            await self.wait_connected()
        session = self._session
        if session is None or self._closing:
            raise self._closed_error()
        return await session.open_channel(on_return=on_return, returns_buffer=returns_buffer)

    @asynccontextmanager
    async def channel(
        self,
        *,
        on_return: Callable[[Any], None] | None = None,
        returns_buffer: int = 1024,
    ) -> AsyncIterator[ClientChannel]:
        """Open a channel for the duration of the block (see :class:`ClientChannel`)."""
        channel = await self.open_channel(on_return=on_return, returns_buffer=returns_buffer)
        try:
            yield channel
        finally:
            await channel.close()

    async def aclose(self) -> None:
        """Close the connection cleanly (connection.close / close-ok) and stop its tasks."""
        self._closing = True
        self._notify()
        session = self._session
        if session is not None and session.alive:
            await session.close(self._close_timeout)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()  # a supervisor between reconnect attempts

    def __repr__(self) -> str:
        state = f"connected to {self._session.url}" if self.is_connected else "not connected"
        return f"<ClientConnection {state}>"


@asynccontextmanager
async def connect(urls: str | Sequence[str], **options: Any) -> AsyncIterator[ClientConnection]:
    """Connect to the first reachable broker of ``urls``; close on leaving the block.

    ``urls`` is one URL or a list tried in order (``amqp://user:pass@host:5672/vhost``).
    Options (keyword arguments of :class:`ClientConnection`): ``heartbeat`` (seconds; None
    takes the broker's, 0 disables), ``connect_timeout`` (per URL), ``reconnect``,
    ``reconnect_delay``, ``reconnect_max_delay``, ``frame_max``, ``channel_max``,
    ``connection_name``, ``close_timeout``, ``dialers`` (scheme -> Dialer) and ``dialer_for``
    (callable scheme -> Dialer or None, e.g.
    ``lambda scheme: pm.hook.plugmq_dialer(scheme=scheme)``). ``amqp://`` falls back to TCP.

    Raises :class:`ConnectionFailed` (with every attempt's error) when no URL connects.
    """
    connection = ClientConnection(urls, **options)
    # Connect before the nursery exists, so ConnectionFailed is not wrapped in a group.
    session = await connection._connect_round(0)
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await connection._start(nursery, session)
            try:
                yield connection
            finally:
                await connection.aclose()
    except BaseExceptionGroup as group:
        # Background tasks do not raise for connection failures, so a group with one member
        # is the block's own exception: re-raise it bare, as a plain ``async with`` would.
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
    if error is not None:
        raise error
