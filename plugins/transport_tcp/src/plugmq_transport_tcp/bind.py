"""Binding the listening sockets: every address of both families on one port by default.

RabbitMQ listens on IPv4 and IPv6 wildcards alike unless told an address; so does plugmq.
``trio.open_tcp_listeners`` would do it too, but with port 0 it lets the kernel pick a
different port for each family, and tests (and anyone asking for "any free port") need one
port that both families answer on. So the first socket's port is reused for the others.
"""

from __future__ import annotations

import errno
import socket

import trio

#: Tries when port 0 was asked and the port picked for the first family is taken in another.
PORT_ZERO_ATTEMPTS = 5

#: Errors meaning "this machine has no such family here" (IPv6 disabled, no address): skipped.
_FAMILY_UNAVAILABLE = frozenset((errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT))


async def open_listeners(host: str, port: int, backlog: int) -> list[trio.SocketListener]:
    """Listening sockets for ``host`` (``''``: every IPv4 and IPv6 address) on ``port``.

    With port 0 every socket shares the port the kernel picked for the first. An IPv6
    wildcard socket is IPv6-only, so it never takes the IPv4 traffic of its twin. Raises
    ``OSError`` if nothing can be bound, or if an explicitly named address cannot be.
    """
    addresses = await _addresses(host, port)
    attempt = 1
    while True:
        try:
            return await _bind_all(addresses, port, backlog, required=bool(host))
        except OSError as error:
            # Only a port-0 collision in the second family is worth another try.
            if port != 0 or error.errno != errno.EADDRINUSE or attempt >= PORT_ZERO_ATTEMPTS:
                raise
            attempt += 1


async def _addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """(family, socket address) pairs to bind, IPv4 first (the start-up log reads better)."""
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    unique: dict[tuple[int, tuple], None] = {}
    for family, _, _, _, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            unique[(family, address)] = None
    return sorted(unique, key=lambda pair: pair[0] != socket.AF_INET)


async def _bind_all(
    addresses: list[tuple[int, tuple]], port: int, backlog: int, required: bool
) -> list[trio.SocketListener]:
    """Bind and listen on each address; close them all if one fails."""
    sockets: list[trio.socket.SocketType] = []
    try:
        for family, address in addresses:
            if sockets and port == 0:  # share the kernel's pick with the other families
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = await _bound_socket(family, address, backlog, required)
            if sock is not None:
                sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(errno.EADDRNOTAVAIL, "no IPv4 or IPv6 address to listen on")
    return [trio.SocketListener(sock) for sock in sockets]


async def _bound_socket(
    family: int, address: tuple, backlog: int, required: bool
) -> trio.socket.SocketType | None:
    """A listening socket on ``address``.

    None when the wildcard address of a family this machine lacks (IPv6 disabled) cannot be
    bound and no address was named: a broker on an IPv4-only host still starts.
    """
    sock = None
    try:
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        await sock.bind(address)
        sock.listen(backlog)
    except OSError as error:
        if sock is not None:
            sock.close()
        if required or error.errno not in _FAMILY_UNAVAILABLE:
            raise
        return None
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    return sock
