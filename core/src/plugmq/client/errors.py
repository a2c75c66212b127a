"""Exceptions raised by :mod:`plugmq.client`.

Everything the client raises on purpose derives from :class:`AMQPClientError`. A close sent by
the broker becomes :class:`ChannelClosed` (soft error: the connection stays usable) or
:class:`ConnectionClosed` (hard error, or the transport went away); both carry the broker's
``reply_code`` and ``reply_text`` and are raised to the task waiting at the time *and* to every
later call on the closed object.
"""

from __future__ import annotations


class AMQPClientError(Exception):
    """Base class of the client's errors."""


class ClosedError(AMQPClientError):
    """A close carrying an AMQP reply code and text.

    ``class_id``/``method_id`` name the method that caused the close (0 when none did).
    """

    def __init__(
        self, reply_code: int, reply_text: str, class_id: int = 0, method_id: int = 0
    ) -> None:
        super().__init__(f"{reply_code} {reply_text}")
        self.reply_code = reply_code
        self.reply_text = reply_text
        self.class_id = class_id
        self.method_id = method_id

    def again(self) -> ClosedError:
        """A fresh copy to raise to one more caller, chained to this one.

        Raising one instance from many places would keep growing its traceback.
        """
        copy = Exception.__new__(type(self), *self.args)
        copy.__dict__.update(self.__dict__)
        copy.__cause__ = self
        return copy


class ConnectionClosed(ClosedError):
    """The connection is closed: by the broker (connection.close), by us, or because the
    transport failed (``reply_code`` 0 then, and the cause is chained)."""


class ChannelClosed(ClosedError):
    """The channel is closed: by the broker (channel.close, e.g. 404 NOT_FOUND) or by us."""


class ConnectionFailed(ConnectionClosed):
    """No URL of the list could be connected to.

    ``errors`` holds one ``(url, exception)`` pair per attempt, in order (passwords masked).
    """

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        detail = "; ".join(f"{url}: {error!r}" for url, error in errors)
        super().__init__(0, f"could not connect to any broker ({detail})")
        self.errors = errors


class PublishNacked(AMQPClientError):
    """The broker refused (basic.nack) one or more messages published in confirm mode.

    ``sequence_numbers`` lists the refused publish sequence numbers.
    """

    def __init__(self, sequence_numbers: list[int]) -> None:
        shown = ", ".join(map(str, sequence_numbers[:10]))
        more = "..." if len(sequence_numbers) > 10 else ""
        super().__init__(f"broker nacked {len(sequence_numbers)} message(s): {shown}{more}")
        self.sequence_numbers = sequence_numbers
