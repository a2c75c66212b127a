"""AMQP errors carrying their reply codes.

Every protocol failure the broker can report is one of these exceptions. The engine maps an
exception to `channel.close` or `connection.close` in one module,
:mod:`plugmq.broker.connection` (``_dispatch``, ``close_channel``, ``_close_with``), using
:attr:`AMQPError.soft`: soft errors close the channel, hard errors close the connection.
"""

from __future__ import annotations

from plugmq.amqp import constants as C


class AMQPError(Exception):
    """A protocol error with an AMQP reply code and text.

    ``class_id``/``method_id`` name the method that caused it (0 when none did).
    """

    reply_code: int = C.INTERNAL_ERROR
    soft: bool = False

    def __init__(self, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(text)
        self.class_id = class_id
        self.method_id = method_id

    @property
    def reply_text(self) -> str:
        """The reply text as RabbitMQ writes it: ``NAME - explanation``, at most 255 bytes."""
        name = C.REPLY_NAMES.get(self.reply_code, "ERROR")
        return f"{name} - {self}"[:255]


class ChannelError(AMQPError):
    """A soft error: the channel is closed, the connection stays open."""

    soft = True


class NotConfirmed(ChannelError):
    """541 on a channel: a durable operation was written locally but not replicated.

    RabbitMQ likewise closes a channel (not the connection) with 541 when a queue fails.
    """

    reply_code = C.INTERNAL_ERROR


class AccessRefused(ChannelError):
    """403: the user may not do this (permissions, exclusive queue of another connection)."""

    reply_code = C.ACCESS_REFUSED


class NotFound(ChannelError):
    """404: the named exchange or queue does not exist."""

    reply_code = C.NOT_FOUND


class ResourceLocked(ChannelError):
    """405: the queue is exclusive to another connection, or has an exclusive consumer."""

    reply_code = C.RESOURCE_LOCKED


class PreconditionFailed(ChannelError):
    """406: an equivalence check or a precondition (if-unused, unknown delivery tag) failed."""

    reply_code = C.PRECONDITION_FAILED


class ConnectionError_(AMQPError):
    """A hard error: the whole connection is closed."""


class ConnectionForced(ConnectionError_):
    """320: the broker closes the connection (shutdown, operator request)."""

    reply_code = C.CONNECTION_FORCED


class ConnectionAccessRefused(ConnectionError_):
    """403 on the connection: authentication failed or the vhost is refused."""

    reply_code = C.ACCESS_REFUSED


class InvalidPath(ConnectionError_):
    """402: the virtual host does not exist."""

    reply_code = C.INVALID_PATH


class FrameError(ConnectionError_):
    """501: a frame is malformed (size, frame-end octet, type) or its method undecodable."""

    reply_code = C.FRAME_ERROR


class SyntaxError_(ConnectionError_):
    """502: a field holds an illegal value (malformed content properties)."""

    reply_code = C.SYNTAX_ERROR


class CommandInvalid(ConnectionError_):
    """503: a method that is invalid in this state (out of order, unexpected content)."""

    reply_code = C.COMMAND_INVALID


class ChannelNotOpen(ConnectionError_):
    """504: a frame on a channel that is not open, or a channel opened twice."""

    reply_code = C.CHANNEL_ERROR


class UnexpectedFrame(ConnectionError_):
    """505: a frame that the peer must not send now (a body without a header...)."""

    reply_code = C.UNEXPECTED_FRAME


class ResourceError(ConnectionError_):
    """506: a limit of the server was reached (channel_max...)."""

    reply_code = C.RESOURCE_ERROR


class NotAllowed(ConnectionError_):
    """530: the peer asked for something the server does not allow (frame_max, vhost...)."""

    reply_code = C.NOT_ALLOWED


class NotImplemented_(ConnectionError_):
    """540: a method or feature the server does not implement."""

    reply_code = C.NOT_IMPLEMENTED


class InternalError(ConnectionError_):
    """541: a bug or an unexpected failure inside the broker."""

    reply_code = C.INTERNAL_ERROR
