"""The built-in dialer for ``amqp://`` URLs: plain TCP through trio.

The client never imports the plugin machinery; callers that want plugin transports pass a
callable to :func:`plugmq.client.connect`, e.g.
``dialer_for=lambda scheme: pm.hook.plugmq_dialer(scheme=scheme)`` (pluggy hooks take
keyword arguments only).
"""

from __future__ import annotations

import trio


class TCPDialer:
    """Opens TCP streams (``TCP_NODELAY`` is set by trio on every socket stream)."""

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        """Connect to ``host:port``; raise ``OSError`` when nothing listens there."""
        return await trio.open_tcp_stream(host, port)
