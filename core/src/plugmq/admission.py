"""The connection hooks' types: what a plugin sees of a new connection, and how it refuses it.

``plugmq_connection_check`` sees a :class:`ConnectionInfo` after the client's
connection.start-ok (before authentication: a standby has no user database) and may return a
:class:`ConnectionRefusal`; the broker then answers with connection.close carrying its code and
text (a standby names the master: ``"standby; the master is amqp://10.0.0.2:5672/"``), which
clients show to the user and failover clients act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plugmq.amqp import constants as C
from plugmq.amqp.errors import AMQPError
from plugmq.client.urls import master_redirect_text


@dataclass(frozen=True)
class ConnectionInfo:
    """A connection being opened, as the connection hook sees it."""

    #: ``host:port`` of the client.
    peer: str
    #: The client's properties from connection.start-ok (product, version, capabilities...).
    client_properties: dict[str, Any] = field(default_factory=dict)
    #: The SASL mechanism the client chose.
    mechanism: str = ""


@dataclass(frozen=True)
class ConnectionRefusal:
    """Refuse a connection with connection.close ``reply_code`` / ``text``.

    320 CONNECTION_FORCED (the default) is what RabbitMQ sends when a node will not serve;
    530 NOT_ALLOWED and 403 ACCESS_REFUSED fit policy refusals.
    """

    text: str
    reply_code: int = C.CONNECTION_FORCED

    @classmethod
    def redirect(cls, state: str, master_url: str) -> ConnectionRefusal:
        """A 320 refusal sending the client to ``master_url``, in the one text convention
        failover clients follow (:func:`plugmq.client.urls.master_redirect_text`):
        ``"standby; the master is amqp://10.0.0.2:5672/"``. Name no credentials in the URL."""
        return cls(master_redirect_text(state, master_url))

    def error(self) -> AMQPError:
        """The AMQP error the connection closes with (class 10 method 11: start-ok)."""
        error = AMQPError(self.text, 10, 11)
        error.reply_code = self.reply_code
        return error
