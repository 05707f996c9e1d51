"""A throwaway PostgreSQL server for tests: Debian's ``postgresql`` binaries, ``initdb`` in a
temporary directory, listening on a free port of 127.0.0.1 (and a socket in that directory),
trust authentication, no fsync. Used by ``tests/conftest.py`` when no PostgreSQL runs (as the
suite does for Redis) and by tests that stop and restart a server on purpose (fault tests)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL server binary (``initdb``, ``postgres``, ``pg_ctl``), or None."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return versions[-1] if versions else None


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: run its binaries as the ``postgres`` user then (the
    child itself changes user, so signals reach the server)."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


class ThrowawayPostgres:
    """``start()`` → a running server at ``url`` (database ``postgres``, user ``postgres``);
    ``stop()`` ends it (``start()`` again reuses the data directory); ``close()`` deletes it."""

    def __init__(self, port: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="callbot-pg-"))
        self.data = self.dir / "data"
        self.port = port or _free_tcp_port()
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb = pg_bin("initdb")
        if initdb is None or pg_bin("postgres") is None:
            raise RuntimeError("PostgreSQL server binaries not installed "
                               "(apt-get install postgresql)")
        subprocess.run([initdb, "-D", str(self.data), "-U", "postgres",
                        "-A", "trust", "-E", "UTF8", "--no-instructions"],
                       check=True, capture_output=True, cwd=self.dir, **_as_user())

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 30.0) -> ThrowawayPostgres:
        postgres = pg_bin("postgres")
        assert postgres is not None
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - kept for the server's life
        if os.geteuid() == 0:
            shutil.chown(self.dir / "server.log", "postgres", "postgres")
        self.proc = subprocess.Popen(
            [postgres, "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300"],
            stdout=log, stderr=log, cwd=self.dir, **_as_user())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("PostgreSQL did not start: "
                                   + (self.dir / "server.log").read_text(errors="replace")[-800:])
            if self.ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL not ready after {timeout:.0f} s")

    def ready(self) -> bool:
        try:
            import psycopg2

            psycopg2.connect(self.url, connect_timeout=2).close()
            return True
        except Exception:
            return False

    def stop(self) -> None:
        """Fast shutdown (SIGINT): connections are cut, as when a database host goes away."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
