"""One store process per host: the line processes' writes on one SQLAlchemy session factory.

``callbot worker --lines N`` (N > 3) starts ``python -m callbot.campaign.store_service`` beside
the speech process and restarts it when it dies; its line processes send every write here
(:class:`callbot.campaign.linestore.RpcStore`, the wire format is described there) and so never
import SQLAlchemy or the models. Each request runs the same ``jobs.*`` / ``recordings.*``
function a lone line worker runs in-process, as one transaction, retried while the database is
away (``DB_RETRY_S``); its answer is written only after the commit: "stored when heard" and
"dial once" (the INVITE waits for the claim's answer) hold as before.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from typing import Any

from callbot import defaults, peer
from callbot.campaign import linestore

log = logging.getLogger(__name__)


class Store:
    """What each request does (one method per ``op``)."""

    def __init__(self, settings: Any):
        from callbot.campaign.store import open_db
        from callbot.campaign.worker import schema_current
        from callbot.recordings import open_store

        self.settings = settings
        self.factory = open_db(settings, migrate=not schema_current(settings))
        self.audio = open_store(settings, self.factory)
        self.db_retry_s = float(settings.extra.get("db_retry_s") or defaults.DB_RETRY_S)
        self._redis: Any = None
        self._queues: dict[str, str] = {}
        self.lines: dict[str, int] = {}
        """Line processes that started and did not stop yet (worker id → pid)."""
        self._lock = threading.Lock()

    def lines_alive(self) -> list[int]:
        """Pids of the line processes still running that wrote here."""
        with self._lock:
            pids = list(self.lines.values())
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass
            alive.append(pid)
        return alive

    def run(self, op: str, args: dict[str, Any], blob: bytes, retry: int) -> Any:
        from callbot.db import retrying

        fn = getattr(self, "op_" + op, None)
        if fn is None:
            raise ValueError(f"unknown op {op!r}")
        return retrying(lambda: fn(blob=blob, again=retry > 0, **args),
                        what=f"{op} (store process)", for_s=self.db_retry_s)

    def op_hello(self, **_: Any) -> str:
        return "store"

    def redis(self) -> Any:
        """The host's Redis (opened at the first queue request; thread-safe pool)."""
        with self._lock:
            if self._redis is None:
                from callbot.campaign.store import redis_connection

                self._redis = redis_connection(self.settings)
            return self._redis

    def op_take(self, *, queue: str, timeout: float, **_: Any) -> list[Any] | None:
        r = self.redis()
        key = self._queues.get(queue)
        if key is None:
            from rq import Queue

            key = self._queues[queue] = str(Queue(queue, connection=r).key)
        got = linestore.take_job(r, key, float(timeout))
        return None if got is None else list(got)

    def op_job_done(self, *, key: str, **_: Any) -> None:
        self.redis().delete(key)

    def op_status(self, *, worker_id: str, calls: int, error: str | None, **_: Any) -> None:
        linestore.publish_status(self.redis(), worker_id, int(calls), error)

    def op_kick(self, **_: Any) -> None:
        linestore.kick(self.redis())

    def op_begin_dialing(self, *, attempt_id: int, worker_id: str, committee: str | None,
                         again: bool, **_: Any) -> dict[str, Any] | None:
        from dataclasses import asdict

        from callbot.campaign import jobs

        job = jobs.begin_dialing(self.factory, attempt_id, worker_id,
                                 default_committee=committee, reclaim=again)
        return None if job is None else asdict(job)

    def op_add_reply(self, *, owner: dict[str, Any], meta: dict[str, Any], key: str,
                     **_: Any) -> int:
        from callbot import recordings

        return recordings.add_reply_row(self.factory, self.audio.name,
                                        recordings.Owner(**owner), meta, key)

    def op_put_audio(self, *, rec_id: int, key: str, blob: bytes, **_: Any) -> int:
        from callbot import recordings

        return recordings.put_encoded(self.factory, self.audio, rec_id, key, blob)

    def op_heard(self, *, attempt_id: int, campaign_id: int, contact_id: int,
                 records: list[list[Any]], alerts: list[dict[str, Any]], again: bool,
                 **_: Any) -> None:
        from callbot.campaign import jobs

        jobs.store_heard(self.factory, attempt_id, campaign_id, contact_id,
                         [(str(f), v, r) for f, v, r in records], alerts, again=again)

    def op_record_end(self, *, attempt_id: int, reason: str, **_: Any) -> None:
        from callbot.campaign import jobs

        jobs.record_end(self.factory, attempt_id, reason)

    def op_store_call(self, *, owner: dict[str, Any], key: str, seconds: float, blob: bytes,
                      **_: Any) -> int:
        from callbot import recordings

        return recordings.add_call(self.factory, self.audio, recordings.Owner(**owner), key,
                                   blob, seconds)

    def op_finish(self, *, attempt_id: int, result: dict[str, Any], error: str | None,
                  **_: Any) -> None:
        from callbot.campaign import jobs

        jobs.finish(self.factory, attempt_id, jobs.CallOutcome(**result), error=error)

    def op_give_back(self, *, attempt_id: int, reason: str, **_: Any) -> None:
        from callbot.campaign import jobs

        jobs.give_back(self.factory, attempt_id, reason)

    def op_worker_started(self, *, worker_id: str, host: str, pid: int, lines: int,
                          down_since: Any, reason: str | None, **_: Any) -> None:
        from callbot.campaign import jobs

        jobs.worker_started(self.factory, worker_id, host, pid, lines, down_since, reason)
        with self._lock:
            self.lines[worker_id] = pid

    def op_heartbeat(self, *, worker_id: str, down_since: Any, reason: str | None,
                     **_: Any) -> int:
        from callbot.campaign import jobs

        n = jobs.worker_heartbeat(self.factory, worker_id, down_since, reason)
        pid = worker_id.rsplit("-", 2)[-2] if worker_id.count("-") >= 2 else ""
        if n and pid.isdigit():  # (a store started again learns its line processes so)
            with self._lock:
                self.lines.setdefault(worker_id, int(pid))
        return n

    def op_worker_stopped(self, *, worker_id: str, **_: Any) -> None:
        from callbot.campaign import jobs

        jobs.worker_stopped(self.factory, worker_id)
        with self._lock:
            self.lines.pop(worker_id, None)


class _Server(socketserver.UnixStreamServer):
    """One request per connection, each on a thread of a pool that grows to what is asked of
    it at once and keeps its threads (a thread started per request — socketserver's
    ThreadingMixIn — was ~0.1 of the ~0.3 CPU-ms each request cost the store process before its
    own work, 20 requests a call); ``server_close`` waits for the requests under way."""

    allow_reuse_address = False
    request_queue_size = 256
    """The listen backlog (socketserver's default, 5, refused connections — EAGAIN on an
    abstract socket — when 34 line processes' heartbeats and queue reads met at start: each then
    waited 0.5–1 s to send again)."""
    MAX_THREADS = 1024
    """Requests served at once (idle lines' queue reads wait up to a second each)."""

    def __init__(self, address: str, handler: type[socketserver.BaseRequestHandler]):
        from concurrent.futures import ThreadPoolExecutor

        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(max_workers=self.MAX_THREADS,
                                       thread_name_prefix="store-request")

    def process_request(self, request: Any, client_address: Any) -> None:
        self.pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - as socketserver's threads: logged, the server lives
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=True)  # a request under way is answered before the process exits


def _handler(store: Store) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            if not peer.trusted(conn):
                log.warning("store process: a connection from uid %s refused (only this "
                            "user's line processes write here)", peer.peer_uid(conn))
                return
            try:
                line, rest = linestore.read_line(conn)
                head = json.loads(line)
                blob = linestore.read_exact(conn, int(head.get("size") or 0), rest)
            except (OSError, ConnectionError, ValueError):
                return  # the line process went away: it sends it again
            try:
                got = _PROFILE.run(store, head, blob) if _PROFILE is not None else \
                    store.run(str(head["op"]), linestore.from_wire(head.get("args") or {}),
                              blob, int(head.get("retry") or 0))
                reply = {"ok": linestore.to_wire(got)}
            except Exception as exc:  # noqa: BLE001 - the line process logs it for its call
                log.exception("store request %s failed", head.get("op"))
                reply = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            try:
                conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
            except OSError:
                log.warning("line process gone before the answer to %s (committed)",
                            head.get("op"))

    return Handler


class _Profile:
    """``CALLBOT_STORE_PROFILE=PATH``: every request under cProfile on its thread's CPU clock,
    the stats of all requests written to PATH and the CPU-s per op to PATH.ops.json when the
    process ends; a PATH ending in ``.json``: the CPU per op only, no profiler (a bench's aid:
    bench/store_ops.py)."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self.profiles: list[Any] = []
        self.ops: dict[str, list[float]] = {}

    def run(self, store: Store, head: dict[str, Any], blob: bytes) -> Any:
        import cProfile

        prof = None if self.path.endswith(".json") else cProfile.Profile(time.thread_time)
        t0 = time.thread_time()
        try:
            args = (str(head["op"]), linestore.from_wire(head.get("args") or {}), blob,
                    int(head.get("retry") or 0))
            return store.run(*args) if prof is None else prof.runcall(store.run, *args)
        finally:
            spent = time.thread_time() - t0
            with self.lock:
                n_s = self.ops.setdefault(str(head["op"]), [0, 0.0])
                n_s[0] += 1
                n_s[1] += spent
                if prof is not None:
                    self.profiles.append(prof)

    def dump(self) -> None:
        import pstats

        with self.lock:
            if self.profiles:
                pstats.Stats(*self.profiles).dump_stats(self.path)
            with open(self.path if self.path.endswith(".json") else self.path + ".ops.json",
                      "w") as f:
                json.dump(self.ops, f)


_PROFILE = _Profile(os.environ["CALLBOT_STORE_PROFILE"]) \
    if os.environ.get("CALLBOT_STORE_PROFILE") else None


def serve(settings: Any = None) -> int:
    """Run the store process until SIGTERM (the address comes from ``CALLBOT_STORE_SOCKET``)."""
    from callbot.config import load_settings
    from callbot.parent import die_with_parent

    die_with_parent()
    settings = settings or load_settings()
    raw = os.environ.get(linestore.ENV)
    if not raw:
        print(f"callbot store: {linestore.ENV} 未设置 (started by `callbot worker`)",
              file=sys.stderr)
        return defaults.EXIT_CONFIG
    address = "\0" + raw[1:] if raw.startswith("@") else raw
    store = Store(settings)
    server = _Server(address, _handler(store))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    t = threading.Thread(target=server.serve_forever, args=(0.2,), name="store-accept",
                         daemon=True)
    t.start()
    log.warning("store process %s: serving line processes", os.getpid())
    while not stop.wait(0.5):
        pass
    # stopped with line processes still up (their supervisor was killed: they got SIGTERM too
    # and end the calls they have): serve them until they are gone
    deadline = time.monotonic() + defaults.MAX_CALL_S + 30
    while store.lines_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    server.shutdown()
    server.server_close()  # waits for the requests under way
    if _PROFILE is not None:
        _PROFILE.dump()
    return 0


def main() -> None:
    """``python -m callbot.campaign.store_service`` (started by ``callbot worker``)."""
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(serve())


if __name__ == "__main__":
    main()
