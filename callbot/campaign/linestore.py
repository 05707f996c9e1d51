"""What a line process stores, behind one small interface (:class:`LineStore`), chosen at start.

- ``jobs.InProcessStore`` (in :mod:`callbot.campaign.jobs`, beside the functions it calls,
  so that the two modules import no circle): the ``jobs.*`` / ``recordings.*`` functions on
  this process's own SQLAlchemy session (a lone ``callbot worker --lines ≤ 3``, tests, the demo).
- :class:`RpcStore`: the host's store process (:mod:`callbot.campaign.store_service`, started
  by the supervisor beside the speech process) does them; this process then never imports
  SQLAlchemy or the models (≈ 22 MB RSS each, 34 times at 100 lines). It also reads the call
  queue for the lines (BLPOP, the RQ job's function and arguments), publishes their status and
  wakes the dispatcher, so the line process never imports redis-py or RQ either (≈ 20 MB more).
  :class:`RedisQueue` does that part in-process.

Wire format, one abstract Unix-socket connection per request: a JSON line ``{"op": NAME,
"args": {...}, "retry": N, "size": B}`` followed by *B* raw bytes (compressed audio, when the
request carries any), answered by one JSON line ``{"ok": value}`` or ``{"error": message}``
written only **after the commit**. Each request is one whole transaction and safe to repeat: a
request whose connection broke is sent again (``retry`` > 0) until it is answered or
``DB_RETRY_S`` has passed, as a database write is retried when the database is away.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from callbot import defaults
from callbot.exceptions import CampaignError
from callbot.recording_audio import TURNS, Owner, encode, new_key, wav_pcm

if TYPE_CHECKING:
    from callbot.campaign.jobs import CallJob, CallOutcome

log = logging.getLogger(__name__)

ENV = "CALLBOT_STORE_SOCKET"
"""Set by ``callbot worker`` for its line processes: the store process's socket address
(``@`` for the leading NUL of an abstract address)."""
KICK_KEY = "callbot:dispatcher:kick"
"""Redis list a line worker pushes to after each call: the dispatcher refills its line at once."""
STATUS_PREFIX = "callbot:line-worker:"
"""Redis hash per line-worker process: ``calls`` up now, last ``error``, ``at`` (epoch s)."""
STATUS_TTL_S = 86400


class Taken(NamedTuple):
    """A job taken off the call queue: its id, the function RQ names and its arguments, and the
    Redis key of the job's hash (deleted once it ran: results live in SQL)."""

    jid: str
    func: str
    args: list[Any]
    kwargs: dict[str, Any]
    key: str


def take_job(redis: Any, queue_key: str, timeout: float) -> Taken | None:
    """BLPOP one job id off *queue_key* and load its RQ job; None when none came (or the job's
    hash is gone: the dispatcher enqueues its attempt again)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    got = redis.blpop([queue_key], timeout=timeout)
    if got is None:
        return None
    jid = got[1].decode() if isinstance(got[1], bytes) else str(got[1])
    try:
        job = Job.fetch(jid, connection=redis)
    except NoSuchJobError:
        return None
    key = job.key.decode() if isinstance(job.key, bytes) else str(job.key)
    return Taken(jid, str(job.func_name), list(job.args), dict(job.kwargs), key)


def job_function(name: str) -> Callable[..., Any]:
    """The function an RQ job names (``module.function``)."""
    import importlib

    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def publish_status(redis: Any, worker_id: str, calls: int, error: str | None) -> None:
    """Calls up and the last error of a line worker, for the web app."""
    key = STATUS_PREFIX + worker_id
    with redis.pipeline(transaction=False) as p:
        p.hset(key, mapping={"calls": calls, "error": error or "", "at": time.time()})
        p.expire(key, STATUS_TTL_S)
        p.execute()


def kick(redis: Any) -> None:
    """Wake the dispatcher (a line is free)."""
    with redis.pipeline(transaction=False) as p:
        p.rpush(KICK_KEY, 1)
        p.ltrim(KICK_KEY, -16, -1)
        p.execute()


class RedisQueue:
    """The call queue on this process's own Redis connection (a lone worker)."""

    def __init__(self, redis: Any, queue_name: str):
        from rq import Queue

        self.redis = redis
        self.key = str(Queue(queue_name, connection=redis).key)

    def take(self, timeout: float) -> Taken | None:
        return take_job(self.redis, self.key, timeout)

    def done(self, taken: Taken) -> None:
        self.redis.delete(taken.key)

    def status(self, worker_id: str, calls: int, error: str | None) -> None:
        publish_status(self.redis, worker_id, calls, error)

    def kick(self) -> None:
        kick(self.redis)


class StoreAway(CampaignError):
    """The host's store process did not answer within ``DB_RETRY_S``."""


def address_for(data_dir: Path, supervisor_pid: int) -> str:
    """The store process's address: an abstract Unix socket named after the data dir and the
    supervisor that owns it (two ``callbot worker`` on one installation each have their own)."""
    import hashlib

    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return f"\0callbot-store-{digest}-{supervisor_pid}"


def utcnow() -> datetime:
    """Now as naive UTC (the models' ``utcnow`` without importing them)."""
    from datetime import UTC

    return datetime.now(UTC).replace(tzinfo=None)


class LineStore(Protocol):
    """Everything a line process writes: the claim, what a call heard, its end and outcome, the
    voice, and the process's own ``line_workers`` row."""

    def ready(self) -> bool:
        """Whether a line may take a job now (the store answers)."""
        ...

    def begin_dialing(self, attempt_id: int, worker_id: str,
                      committee: str | None) -> CallJob | None: ...

    def add_reply(self, owner: Owner, reply: Any) -> tuple[int, str] | None: ...

    def put_audio(self, rec_id: int, key: str, pcm: bytes) -> None:
        """Compress and store one reply's audio (the audio thread: waits for a quiet moment)."""
        ...

    def heard(self, job: CallJob, records: list[tuple[str, Any, int | None]],
              alerts: list[dict[str, Any]]) -> None:
        """Answers (field, value, recording id) and the alerts they raised, in one commit."""
        ...

    def record_end(self, attempt_id: int, reason: str) -> None: ...

    def store_call(self, owner: Owner, wav: Path) -> None: ...

    def finish(self, attempt_id: int, result: CallOutcome, error: str | None) -> None: ...

    def give_back(self, attempt_id: int, reason: str) -> None: ...

    def worker_started(self, worker_id: str, host: str, pid: int, lines: int,
                       down_since: datetime | None, reason: str | None) -> None: ...

    def heartbeat(self, worker_id: str, down_since: datetime | None,
                  reason: str | None) -> int:
        """Returns 1, or 0 when the reconciler took this worker for dead."""
        ...

    def worker_stopped(self, worker_id: str) -> None: ...


# --- the wire -----------------------------------------------------------------------------------


def to_wire(x: Any) -> Any:
    """JSON for a request or a reply: datetimes as ISO strings (``"dt:…"``)."""
    if isinstance(x, datetime):
        return "dt:" + x.isoformat()
    if isinstance(x, dict):
        return {str(k): to_wire(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_wire(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def from_wire(x: Any) -> Any:
    """The inverse of :func:`to_wire`."""
    if isinstance(x, str) and x.startswith("dt:"):
        return datetime.fromisoformat(x[3:])
    if isinstance(x, dict):
        return {k: from_wire(v) for k, v in x.items()}
    if isinstance(x, list):
        return [from_wire(v) for v in x]
    return x


def outcome_wire(result: CallOutcome) -> dict[str, Any]:
    """What ``jobs.finish`` reads of a CallOutcome (the recording stays on this host)."""
    d = asdict(result)
    d.pop("recording", None)
    return to_wire(d)  # type: ignore[no-any-return]


def read_line(conn: socket.socket, limit: int = 1 << 24) -> tuple[bytes, bytes]:
    """One JSON line, and what was read past it (the start of a request's bytes)."""
    buf = bytearray()
    while b"\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
        if len(buf) > limit:
            raise ConnectionError("line too long")
    line, _, rest = bytes(buf).partition(b"\n")
    return line, rest


def read_exact(conn: socket.socket, n: int, head: bytes = b"") -> bytes:
    """*n* bytes: *head* (read already) and the rest from *conn*."""
    buf = bytearray(head)
    while len(buf) < n:
        chunk = conn.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def call(address: str, op: str, args: dict[str, Any], *, blob: bytes = b"", retry: int = 0,
         timeout_s: float = 60.0) -> Any:
    """One request, one reply (raises OSError / ConnectionError when the store is away)."""
    head = {"op": op, "args": to_wire(args), "retry": retry}
    if blob:
        head["size"] = len(blob)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        conn.connect(address)
        conn.sendall(json.dumps(head, ensure_ascii=False).encode() + b"\n" + blob)
        line, _ = read_line(conn)
    reply = json.loads(line)
    if "error" in reply:
        raise CampaignError(f"存储进程出错 (store process failed {op}): {reply['error']}")
    return from_wire(reply.get("ok"))


def ping(address: str, timeout_s: float = 2.0) -> Any:
    """Whether the store process answers (raises when it does not)."""
    return call(address, "hello", {}, timeout_s=timeout_s)


class RpcStore:
    """The host's store process does the writes; a broken request is sent again until it is
    answered or ``db_retry_s`` has passed (each request is one whole transaction, safe to
    repeat)."""

    def __init__(self, address: str, *, db_retry_s: float = defaults.DB_RETRY_S):
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.db_retry_s = db_retry_s
        self.away_since: float | None = None
        self._lock = threading.Lock()
        self._held: set[int] = set()
        """Attempts a line of this process claimed and has not finished (a retried claim may
        take back its own ``dialing`` row only when no other line here holds it)."""

    def _call(self, op: str, what: str, *, blob: bytes = b"", for_s: float | None = None,
              **args: Any) -> Any:
        deadline = time.monotonic() + (self.db_retry_s if for_s is None else for_s)
        tries = 0
        while True:
            try:
                # a reply comes after the commit; the store itself retries a database that is
                # away for up to db_retry_s
                got = call(self.address, op, args, blob=blob, retry=tries,
                           timeout_s=self.db_retry_s + 60.0)
            except (OSError, ConnectionError, ValueError) as exc:
                tries += 1
                if self.away_since is None:
                    self.away_since = time.monotonic()
                if time.monotonic() + 0.5 > deadline:
                    raise StoreAway(f"存储进程无响应 (store process away) while storing {what}: "
                                    f"{exc}") from exc
                if tries == 1:
                    log.warning("store process away while storing %s; retrying for up to %.0f s: "
                                "%s", what, self.db_retry_s, exc)
                time.sleep(0.5)
                continue
            if tries:
                log.warning("stored %s after %d retr%s", what, tries, "y" if tries == 1 else "ies")
            self.away_since = None
            return got

    def ready(self) -> bool:
        if self.away_since is None:
            return True
        try:
            ping(self.address, 1.0)
        except (OSError, ConnectionError, ValueError, CampaignError):
            return False
        self.away_since = None
        return True

    def begin_dialing(self, attempt_id: int, worker_id: str,
                      committee: str | None) -> CallJob | None:
        from callbot.campaign.jobs import CallJob

        with self._lock:
            if attempt_id in self._held:
                return None  # another line of this process dials it
            self._held.add(attempt_id)
        got = None
        try:
            got = self._call("begin_dialing", f"the claim of attempt {attempt_id}",
                             attempt_id=attempt_id, worker_id=worker_id, committee=committee)
        finally:
            if got is None:
                with self._lock:
                    self._held.discard(attempt_id)
        return None if got is None else CallJob(**got)

    def _release(self, attempt_id: int) -> None:
        with self._lock:
            self._held.discard(attempt_id)

    def add_reply(self, owner: Owner, reply: Any) -> tuple[int, str] | None:
        from callbot.recording_audio import reply_meta

        if not reply.audio:
            return None
        key = new_key()
        rec = self._call("add_reply", f"a reply of attempt {owner.attempt_id}",
                         owner=asdict(owner), meta=reply_meta(reply), key=key)
        return int(rec), key

    def put_audio(self, rec_id: int, key: str, pcm: bytes) -> None:
        TURNS.quiet(defaults.RECORDING_DEFER_MAX_S)
        data = encode(pcm)
        self._call("put_audio", f"the audio of recording {rec_id}", blob=data, rec_id=rec_id,
                   key=key)

    def heard(self, job: CallJob, records: list[tuple[str, Any, int | None]],
              alerts: list[dict[str, Any]]) -> None:
        self._call("heard", f"answers and alerts of attempt {job.attempt_id}",
                   attempt_id=job.attempt_id, campaign_id=job.campaign_id,
                   contact_id=job.contact_id, records=[list(r) for r in records], alerts=alerts)

    def record_end(self, attempt_id: int, reason: str) -> None:
        self._call("record_end", f"the end of attempt {attempt_id}", attempt_id=attempt_id,
                   reason=reason)

    def store_call(self, owner: Owner, wav: Path) -> None:
        from callbot.recording_audio import call_seconds

        pcm = wav_pcm(wav)
        if not pcm:
            return
        data = encode(pcm)
        self._call("store_call", f"the call recording of attempt {owner.attempt_id}", blob=data,
                   owner=asdict(owner), key=new_key(), seconds=call_seconds(pcm))

    def finish(self, attempt_id: int, result: CallOutcome, error: str | None) -> None:
        self._call("finish", f"the outcome of attempt {attempt_id}", attempt_id=attempt_id,
                   result=outcome_wire(result), error=error)
        self._release(attempt_id)

    def give_back(self, attempt_id: int, reason: str) -> None:
        self._call("give_back", f"the give-back of attempt {attempt_id}", attempt_id=attempt_id,
                   reason=reason)
        self._release(attempt_id)

    def worker_started(self, worker_id: str, host: str, pid: int, lines: int,
                       down_since: datetime | None, reason: str | None) -> None:
        self._call("worker_started", f"line worker {worker_id}", worker_id=worker_id, host=host,
                   pid=pid, lines=lines, down_since=down_since, reason=reason)

    def heartbeat(self, worker_id: str, down_since: datetime | None,
                  reason: str | None) -> int:
        # one try: a heartbeat missed is sent again at the next period
        return int(call(self.address, "heartbeat", {
            "worker_id": worker_id, "down_since": down_since, "reason": reason}, timeout_s=30.0))

    def worker_stopped(self, worker_id: str) -> None:
        # not for long: a row left running is stopped by the reconciler (missing heartbeat)
        self._call("worker_stopped", f"the stop of line worker {worker_id}", for_s=5.0,
                   worker_id=worker_id)


class RpcQueue:
    """The call queue read by the host's store process for this line process. One line of the
    process reads it at a time, the others wait their turn (up to their *timeout*): an idle
    process of 3 lines asks the store once a second, not 3 times (100 idle lines were ~100
    one-second reads a second in the store process); a job that comes is taken by the line
    reading, the next line reads at once."""

    def __init__(self, store: RpcStore, queue_name: str):
        self.address = store.address
        self.queue_name = queue_name
        self._reading = threading.Lock()

    def take(self, timeout: float) -> Taken | None:
        if not self._reading.acquire(timeout=max(0.0, timeout)):
            return None  # another line of this process is reading: no job for this one yet
        try:
            # one try: a broken connection may have lost a popped id, whose attempt is still
            # queued in SQL (the dispatcher enqueues it again), as when a worker dies after a pop
            got = call(self.address, "take", {"queue": self.queue_name, "timeout": timeout},
                       timeout_s=timeout + 30.0)
        finally:
            self._reading.release()
        return None if got is None else Taken(*got)

    def done(self, taken: Taken) -> None:
        call(self.address, "job_done", {"key": taken.key}, timeout_s=30.0)

    def status(self, worker_id: str, calls: int, error: str | None) -> None:
        call(self.address, "status", {"worker_id": worker_id, "calls": calls, "error": error},
             timeout_s=10.0)

    def kick(self) -> None:
        call(self.address, "kick", {}, timeout_s=10.0)


def open_line_store(settings: Any, *, db_retry_s: float = defaults.DB_RETRY_S) -> Any:
    """The RPC store when this process's supervisor started a store process, else None (the
    caller opens the database itself)."""
    addr = os.environ.get(ENV)
    if not addr:
        return None
    return RpcStore(addr, db_retry_s=db_retry_s)
