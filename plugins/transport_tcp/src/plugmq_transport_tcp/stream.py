"""The broker side of a TCP connection: a trio socket stream plus a non-blocking fast path."""

from __future__ import annotations

import errno
import os

import trio


def _stream_error(error: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """A socket error as trio's stream error (as ``trio.SocketStream`` reports it)."""
    if error.errno == errno.EBADF:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {error}")


class TCPStream(trio.abc.HalfCloseableStream):
    """A ``trio.SocketStream`` that also offers :class:`plugmq.transport.DirectStream`.

    ``send_all``, ``receive_some`` and the rest are the wrapped stream's. The direct calls
    work on the socket's file descriptor, which the stream owns: only :meth:`aclose` closes
    the socket, and it forgets the number first (-1, which the system calls refuse with
    EBADF), so a number reused by a newer socket is never read from or written to.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        #: The trio socket (the broker reads the peer address from it; do not close it).
        self.socket = stream.socket
        self._fd = stream.socket.fileno()

    # -- trio.abc.HalfCloseableStream, delegated -------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send every byte (waits while the socket is full)."""
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the socket takes data."""
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Shut down the sending direction."""
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Wait for data; ``b""`` at end of stream."""
        return await self._stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Close the socket (wakes a task waiting in :meth:`wait_readable`)."""
        self._fd = -1
        await self._stream.aclose()

    # -- plugmq.transport.DirectStream -----------------------------------------------------------

    def try_send(self, data: bytes | memoryview) -> int:
        """Send what the socket takes now; 0 when it is full."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as error:
            raise _stream_error(error) from error

    def try_receive(self, max_bytes: int) -> bytes | None:
        """Bytes the socket holds now, ``b""`` at end of stream, None when it holds none."""
        try:
            return os.read(self._fd, max_bytes)
        except BlockingIOError:
            return None
        except OSError as error:
            raise _stream_error(error) from error

    async def wait_readable(self) -> None:
        """Wait until the socket is readable (``ClosedResourceError`` if it gets closed)."""
        if self._fd == -1:
            raise trio.ClosedResourceError("this socket was already closed")
        await trio.lowlevel.wait_readable(self._fd)


class TCPListener(trio.abc.Listener[TCPStream]):
    """A ``trio.SocketListener`` whose accepted streams are :class:`TCPStream`."""

    def __init__(self, listener: trio.SocketListener) -> None:
        self._listener = listener
        #: The listening trio socket (for the bound address).
        self.socket = listener.socket

    async def accept(self) -> TCPStream:
        """The next connection."""
        return TCPStream(await self._listener.accept())

    async def aclose(self) -> None:
        """Stop listening."""
        await self._listener.aclose()
