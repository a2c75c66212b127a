"""Authorization: users' permissions per virtual host, RabbitMQ style, and their persistence.

A permission is three regular expressions for one user in one virtual host: ``configure``
(declare, delete), ``write`` (publish to an exchange, bind a queue) and ``read`` (consume, get,
purge, bind from an exchange). A resource is allowed when its name matches the pattern
(``re.search``, as RabbitMQ's ``re:run``); the empty pattern matches nothing.

Compiled patterns live in a :class:`Grant`, one per (user, vhost), shared by every connection
of that user to that vhost and updated in place when the permission changes, so a change
applies at once. The publish check costs one set lookup: a grant remembers the exchange names
it allowed (:attr:`Grant.writable`).

Users, vhosts and permissions are durable configuration: every change is journaled as a
:class:`~plugmq.store.records.ConfigSet` record (namespaces ``user``, ``vhost`` and
``permission``) and rebuilt by recovery. Only password hashes and salts are stored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from plugmq.amqp.errors import AccessRefused
from plugmq.auth import User, Users
from plugmq.store.records import ConfigSet

if TYPE_CHECKING:
    from plugmq.journal import Journal

log = structlog.get_logger("plugmq.access")

USER = "user"
VHOST = "vhost"
PERMISSION = "permission"
#: Marks a store whose access configuration was initialised (the default guest was created).
INITIALISED = ("access", "initialised")
NAMESPACES = frozenset((USER, PERMISSION, INITIALISED[0]))

#: Exchange names a grant remembers as writable before it starts over (bounds its memory).
WRITABLE_CACHE_MAX = 4096
FULL = ".*"


class AccessError(ValueError):
    """A bad user, permission or pattern (the message says which)."""


@dataclass(frozen=True)
class Permission:
    """The configure/write/read patterns of one user in one virtual host."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str

    def as_dict(self) -> dict[str, str]:
        """Plain data, for records and management responses."""
        return {
            "user": self.user,
            "vhost": self.vhost,
            "configure": self.configure,
            "write": self.write,
            "read": self.read,
        }


def _compile(pattern: str) -> re.Pattern[str] | None:
    """The compiled pattern, or None for the empty one (which allows nothing)."""
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise AccessError(f"invalid regular expression {pattern!r}: {error}") from error


class Grant:
    """The compiled permission of one user in one vhost, shared by that user's connections."""

    __slots__ = ("_patterns", "permission", "user", "vhost", "writable")

    def __init__(self, user: str, vhost: str, permission: Permission | None) -> None:
        self.user = user
        self.vhost = vhost
        #: Exchange names already allowed for publishing (the one lookup per publish).
        self.writable: set[str] = set()
        self.permission: Permission | None = None
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self.update(permission)

    def update(self, permission: Permission | None) -> None:
        """Use ``permission`` from now on (None: the user has no access to the vhost)."""
        self.permission = permission
        self.writable.clear()  # in place: channels hold a reference to this set
        if permission is None:
            self._patterns = {}
            return
        self._patterns = {
            "configure": _compile(permission.configure),
            "write": _compile(permission.write),
            "read": _compile(permission.read),
        }

    def allows(self, action: str, name: str) -> bool:
        """True when ``action`` (configure, write, read) on resource ``name`` is permitted."""
        pattern = self._patterns.get(action)
        return pattern is not None and pattern.search(name) is not None

    def check(self, action: str, kind: str, name: str, class_id: int, method_id: int) -> None:
        """Raise 403 ACCESS_REFUSED (and log it) unless ``action`` on ``kind`` ``name`` is allowed.

        The default exchange is checked under the name ``amq.default``, as RabbitMQ does.
        """
        if kind == "exchange" and not name:
            name = "amq.default"
        if self.allows(action, name):
            return
        log.warning(
            "access_refused",
            user=self.user,
            vhost=self.vhost,
            resource=kind,
            name=name,
            permission=action,
        )
        raise AccessRefused(
            f"access to {kind} '{name}' in vhost '{self.vhost}' refused for user '{self.user}'",
            class_id,
            method_id,
        )

    def check_publish(self, exchange: str) -> None:
        """The slow path of the publish check: test the pattern, remember a success."""
        self.check("write", "exchange", exchange, 60, 40)
        if len(self.writable) >= WRITABLE_CACHE_MAX:
            self.writable.clear()
        self.writable.add(exchange)


def permission_key(user: str, vhost: str) -> str:
    """The ConfigSet key of a permission: unambiguous whatever the names hold."""
    return json.dumps([user, vhost])


def user_record(user: User) -> ConfigSet:
    """The ConfigSet record of a user: its hash and salt, never a password."""
    value = {
        "password_hash": user.password_hash,
        "salt": user.salt,
        "tags": sorted(user.tags),
        "loopback_only": user.loopback_only,
    }
    return ConfigSet(USER, user.name, value)


class AccessControl:
    """Users, tags and permissions of a broker; every change is journaled."""

    def __init__(self, users: Users, journal: Journal) -> None:
        self.users = users
        self.journal = journal
        self.permissions: dict[tuple[str, str], Permission] = {}
        self._grants: dict[tuple[str, str], Grant] = {}
        self._initialised = False

    # -- connections ---------------------------------------------------------------------------

    def grant(self, user: str, vhost: str) -> Grant | None:
        """The shared grant of ``user`` in ``vhost``, or None when the user has no access."""
        permission = self.permissions.get((user, vhost))
        if permission is None:
            return None
        grant = self._grants.get((user, vhost))
        if grant is None:
            grant = self._grants[(user, vhost)] = Grant(user, vhost, permission)
        return grant

    def tags_of(self, name: str) -> frozenset[str]:
        """The tags of user ``name`` (empty for an unknown user)."""
        user = self.users.users.get(name)
        return user.tags if user is not None else frozenset()

    # -- users ---------------------------------------------------------------------------------

    def add_user(self, name: str, password: str, tags: set[str] | frozenset[str] = frozenset()):
        """Create a user; :class:`AccessError` if it exists or the name is empty."""
        if not name:
            raise AccessError("a user name must not be empty")
        if name in self.users.users:
            raise AccessError(f"user '{name}' already exists")
        self._journal_user(self.users.add(name, password, tags))

    def delete_user(self, name: str) -> None:
        """Delete a user and its permissions."""
        self._existing_user(name)
        del self.users.users[name]
        self.journal.append(ConfigSet(USER, name, None))
        for user, vhost in [key for key in self.permissions if key[0] == name]:
            self.clear_permissions(user, vhost)

    def change_password(self, name: str, password: str) -> None:
        """Set a new password (a new salt and hash)."""
        old = self._existing_user(name)
        self._journal_user(self.users.add(name, password, old.tags, old.loopback_only))

    def set_tags(self, name: str, tags: set[str] | frozenset[str]) -> None:
        """Replace a user's tags (``administrator``, ``monitoring``...)."""
        user = self._existing_user(name)
        user.tags = frozenset(tags)
        self._journal_user(user)

    def _existing_user(self, name: str) -> User:
        user = self.users.users.get(name)
        if user is None:
            raise AccessError(f"no user '{name}'")
        return user

    def _journal_user(self, user: User) -> None:
        self.journal.append(user_record(user))

    # -- permissions ---------------------------------------------------------------------------

    def set_permissions(self, user: str, vhost: str, configure: str, write: str, read: str):
        """Set (or replace) a user's permission in a vhost; patterns are checked first."""
        self._existing_user(user)
        for pattern in (configure, write, read):
            _compile(pattern)
        permission = Permission(user, vhost, configure, write, read)
        self._put(permission)
        key = permission_key(user, vhost)
        self.journal.append(ConfigSet(PERMISSION, key, permission.as_dict()))

    def clear_permissions(self, user: str, vhost: str) -> None:
        """Remove a user's permission in a vhost (:class:`AccessError` if there is none)."""
        if (user, vhost) not in self.permissions:
            raise AccessError(f"user '{user}' has no permissions in vhost '{vhost}'")
        del self.permissions[(user, vhost)]
        grant = self._grants.get((user, vhost))
        if grant is not None:
            # Kept (not dropped) so connections holding it regain access if it is set again.
            grant.update(None)  # connections holding it lose access at once
        self.journal.append(ConfigSet(PERMISSION, permission_key(user, vhost), None))

    def forget_vhost(self, vhost: str) -> None:
        """A vhost was deleted: drop every permission in it."""
        for user, name in [key for key in self.permissions if key[1] == vhost]:
            self.clear_permissions(user, name)

    def _put(self, permission: Permission) -> None:
        key = (permission.user, permission.vhost)
        self.permissions[key] = permission
        grant = self._grants.get(key)
        if grant is not None:
            grant.update(permission)

    # -- recovery and defaults -----------------------------------------------------------------

    def restore(self, record: ConfigSet) -> None:
        """Apply a recovered ``user``, ``permission`` or marker record (no journaling)."""
        value: Any = record.value
        if (record.namespace, record.key) == INITIALISED:
            self._initialised = value is not None
        elif record.namespace == USER and value is not None:
            self.users.users[record.key] = User(
                record.key,
                bytes(value["password_hash"]),
                bytes(value["salt"]),
                frozenset(value["tags"]),
                bool(value["loopback_only"]),
            )
        elif record.namespace == PERMISSION and value is not None:
            fields = {name: value[name] for name in ("configure", "write", "read")}
            self._put(Permission(value["user"], value["vhost"], **fields))

    def ensure_defaults(self) -> None:
        """On a store never initialised: guest/guest (administrator, loopback only) with full
        permissions on ``/``, journaled so that deleting guest later survives a restart."""
        if self._initialised:
            return
        guest = self.users.users.get("guest") or self.users.add(
            "guest", "guest", {"administrator"}, loopback_only=True
        )
        self._journal_user(guest)
        self.set_permissions("guest", "/", FULL, FULL, FULL)
        self.journal.append(ConfigSet(*INITIALISED, True))
        self._initialised = True
