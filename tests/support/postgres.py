"""A real PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` on a free loopback port.

One server per test session (see ``tests/store_pg/conftest.py``), in a temporary directory,
run as an unprivileged user when the tests run as root (PostgreSQL refuses to run as root).
Each test gets its own schema. Password authentication over TCP (scram-sha-256) so wrong
credentials can be tested; readiness is ``pg_ctl start -w`` (it waits for the server to accept
connections), never a sleep.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

USER = "plugmq"
PASSWORD = "plugmq-test-secret"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding ``initdb`` (Debian's layout), or PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``root`` (data in ``root/data``), started and stopped here."""

    bin_dir: Path
    root: Path
    port: int = 0

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def dsn(self, *, password: str = PASSWORD, dbname: str = "postgres") -> str:
        """A libpq connection string for the test superuser."""
        return (
            f"host=127.0.0.1 port={self.port} user={USER} password={password} "
            f"dbname={dbname} connect_timeout=5"
        )

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        """Run a PostgreSQL program, as an unprivileged user when we are root."""
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["runuser", "-u", "nobody", "--"]
        return subprocess.run(
            [*prefix, *command], check=True, capture_output=True, text=True, cwd=self.root
        )

    def init(self) -> PostgresServer:
        """``initdb`` with a password-protected superuser and settings for a test machine."""
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        self.root.chmod(0o700)
        password_file = self.root / "pwfile"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chown(password_file, pwd.getpwnam("nobody").pw_uid, -1)
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            USER,
            "--pwfile",
            str(password_file),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--no-sync",
        )
        self.port = _free_port()
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
                # fsync stays on: the crash tests kill the broker, not the database host.
                "log_min_messages = warning\n"
            )
        return self

    def start(self) -> PostgresServer:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop (``fast`` disconnects clients; ``immediate`` is a crash of the server)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"
            )

    def restart(self, mode: str = "fast") -> None:
        """Stop then start again on the same port."""
        self.stop(mode)
        self.start()

    def remove(self) -> None:
        """Stop and delete everything."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer | None:
    """A started server in a fresh temporary directory, or None when PostgreSQL is missing."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as nobody.
    root = Path(tempfile.mkdtemp(prefix="plugmq-pg-"))
    return PostgresServer(bin_dir, root).init().start()
