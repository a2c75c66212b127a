"""Authentication: SASL mechanisms and the user database.

Mechanisms are plugins (``plugmq_auth_mechanisms``); PLAIN and AMQPLAIN are built in
(:mod:`plugmq.builtin.auth`). A mechanism turns a client's connection.start-ok response into a
user name and password and checks them against :class:`Users`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from pamqp import decode

from plugmq.amqp.errors import ConnectionAccessRefused

_PBKDF2_ROUNDS = 10_000


@dataclass
class User:
    """A broker user: password hash (salted PBKDF2-SHA256) and tags such as ``administrator``."""

    name: str
    password_hash: bytes
    salt: bytes
    tags: frozenset[str] = frozenset()
    #: RabbitMQ's rule for guest: may only connect from a loopback address.
    loopback_only: bool = False
    #: SHA-256 of salt + the last password that passed PBKDF2, kept in memory only.
    _verified: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def check_password(self, password: str) -> bool:
        """Constant-time password check.

        PBKDF2 (10,000 rounds, ~3 ms) protects the stored hash; once a password has passed it,
        later logins with the same password are checked against a salted SHA-256 kept in
        memory, so opening many connections does not cost 3 ms of CPU each.
        """
        quick = hashlib.sha256(self.salt + password.encode()).digest()
        if self._verified is not None and hmac.compare_digest(quick, self._verified):
            return True
        if not hmac.compare_digest(_hash_password(password, self.salt), self.password_hash):
            return False
        self._verified = quick
        return True


def _hash_password(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ROUNDS)


@dataclass
class Users:
    """The user database. Starts with ``guest``/``guest`` (loopback only), as RabbitMQ does."""

    users: dict[str, User] = field(default_factory=dict)

    @classmethod
    def with_default_guest(cls) -> Users:
        """A database holding only guest/guest, allowed from loopback addresses only."""
        users = cls()
        users.add("guest", "guest", tags={"administrator"}, loopback_only=True)
        return users

    def add(
        self,
        name: str,
        password: str,
        tags: set[str] | frozenset[str] = frozenset(),
        loopback_only: bool = False,
    ) -> User:
        """Create or replace a user."""
        salt = os.urandom(16)
        user = User(name, _hash_password(password, salt), salt, frozenset(tags), loopback_only)
        self.users[name] = user
        return user

    def authenticate(self, name: str, password: str, peer_is_loopback: bool) -> User:
        """Return the user, or raise :class:`ConnectionAccessRefused` (403) naming why."""
        user = self.users.get(name)
        if user is None or not user.check_password(password):
            raise ConnectionAccessRefused(
                f"Login was refused using authentication mechanism PLAIN. For details see the "
                f"broker logfile. (user {name!r}: invalid credentials)"
            )
        if user.loopback_only and not peer_is_loopback:
            raise ConnectionAccessRefused(
                f"user {name!r} can only connect via localhost (like RabbitMQ's guest)"
            )
        return user


@runtime_checkable
class Mechanism(Protocol):
    """A SASL mechanism offered in connection.start."""

    #: The SASL name advertised to clients (``"PLAIN"``).
    name: ClassVar[str]

    def credentials(self, response: bytes) -> tuple[str, str]:
        """Decode the client's response into (user name, password).

        Raise :class:`ConnectionAccessRefused` for a malformed response.
        """
        ...


class PlainMechanism:
    """SASL PLAIN: ``\\0user\\0password`` (RFC 4616)."""

    name: ClassVar[str] = "PLAIN"

    def credentials(self, response: bytes) -> tuple[str, str]:
        """Split the PLAIN response."""
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise ConnectionAccessRefused("malformed PLAIN response")
        try:
            return parts[1].decode(), parts[2].decode()
        except UnicodeDecodeError as error:
            raise ConnectionAccessRefused("PLAIN response is not UTF-8") from error


class AMQPlainMechanism:
    """AMQPLAIN: a field table (without its length prefix) holding LOGIN and PASSWORD."""

    name: ClassVar[str] = "AMQPLAIN"

    def credentials(self, response: bytes) -> tuple[str, str]:
        """Decode the AMQPLAIN table."""
        try:
            _, table = decode.field_table(struct.pack(">I", len(response)) + response)
            login, password = table["LOGIN"], table["PASSWORD"]
            if isinstance(login, bytes):
                login = login.decode()
            if isinstance(password, bytes):
                password = password.decode()
        except (KeyError, ValueError, struct.error, IndexError, RecursionError) as error:
            # UnicodeDecodeError is a ValueError: a non-UTF-8 login is malformed too.
            raise ConnectionAccessRefused("malformed AMQPLAIN response", 10, 11) from error
        return str(login), str(password)
