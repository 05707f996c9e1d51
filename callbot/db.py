"""The SQL store: the one declarative Base, engine and session factory.

SQL is the truth (docs/DESIGN notes): every model of every module hangs off :class:`Base`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Executable, Table, create_engine, event
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    """Declarative base of all callbot tables."""


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a mapped class (for bulk INSERTs that bypass the ORM)."""
    return cast(Table, model.__table__)


def changed(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE and return how many rows it changed (the compare-and-set test)."""
    result = cast("CursorResult[Any]", session.execute(statement))
    return result.rowcount


def _create_private(path: Path) -> None:
    """Create a new SQLite file as 0600 (residents' data; SQLite gives its -wal and -shm files the
    same mode). An existing file is left as it is."""
    import os

    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL and a busy timeout so workers and web can share it."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _create_private(Path(path))
        engine = create_engine(url, connect_args={"timeout": 30}, future=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, future=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker bound to *engine*."""
    return sessionmaker(engine, expire_on_commit=False, future=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction: commit on success, roll back on error."""
    s = factory()
    try:
        yield s
        s.commit()
    except BaseException:
        s.rollback()
        raise
    finally:
        s.close()


def is_disconnect(exc: BaseException) -> bool:
    """The database is away (restarting, failing over, unreachable), not a wrong statement."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # connection refused / server closed the connection / the server is shutting down (and
    # SQLite's "database is locked" past its busy timeout): worth another try
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))


def retrying(fn: Any, *, what: str, for_s: float, pause_s: float = 0.5) -> Any:
    """``fn()``, tried again while the database is away, up to *for_s* seconds (then the last
    error is raised). *fn* must be a whole transaction (a ``session_scope``): a retry redoes it."""
    import logging
    import time

    log = logging.getLogger("callbot.db")
    deadline = time.monotonic() + for_s
    tries = 0
    while True:
        try:
            result = fn()
        except Exception as exc:
            tries += 1
            if not is_disconnect(exc) or time.monotonic() + pause_s > deadline:
                raise
            if tries == 1:
                log.warning("database away while storing %s; retrying for up to %.0f s: %s",
                            what, for_s, str(exc).splitlines()[0][:200])
            time.sleep(pause_s)
            continue
        if tries:
            log.warning("stored %s after %d retr%s", what, tries, "y" if tries == 1 else "ies")
        return result
