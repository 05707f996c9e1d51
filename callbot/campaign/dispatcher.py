"""The dispatcher: decides which contacts are due and enqueues ``place_call(attempt_id)``.

Each tick: reconcile (dead workers → ``interrupted``; queued attempts whose job Redis lost →
enqueued again), then per running campaign, while lines are free and the window is open, write
``queued`` attempt rows (committed first) and enqueue their ids. SQL stays the truth.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Integer, String, any_, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from callbot import defaults
from callbot.alerts import Alert, Deliverer, DeliveryStats
from callbot.campaign.jobs import apply_policy
from callbot.campaign.line import BUSY_PREFIX
from callbot.campaign.linestore import KICK_KEY  # line workers push it after each call
from callbot.campaign.models import (
    DIALLED,
    Attempt,
    Campaign,
    Contact,
    DoNotCall,
    LineWorker,
    Target,
    utcnow,
)
from callbot.campaign.policy import Clock, Windows, system_clock
from callbot.config import Settings
from callbot.db import session_scope, table_of

log = logging.getLogger(__name__)

JOB_FUNC = "callbot.campaign.jobs.place_call"
JOB_PREFIX = "attempt-"
REQUEUE_GRACE_S = 10.0
"""A queued attempt whose job is missing from the queue this long is enqueued again."""


def job_id(attempt_id: int) -> str:
    """The RQ job id of an attempt's ``place_call`` job (one job per attempt)."""
    return f"{JOB_PREFIX}{attempt_id}"


@dataclass
class TickStats:
    """What one dispatcher tick did (attempts enqueued, requeued, interrupted; recordings purged)."""

    enqueued: int = 0
    requeued: int = 0
    interrupted: int = 0
    purged: int = 0
    """Recordings deleted for being older than the retention."""
    finished_campaigns: list[int] = field(default_factory=list)


class Dispatcher:
    """One dispatcher per installation (a Redis lock keeps a second one idle)."""

    def __init__(self, factory: sessionmaker[Session], redis: Any, *,
                 clock: Clock = system_clock, queue_name: str = defaults.CALL_QUEUE,
                 dead_after_s: float = defaults.WORKER_HEARTBEAT_S
                 * defaults.WORKER_DEAD_AFTER_HEARTBEATS,
                 job_timeout_s: int = int(defaults.MAX_CALL_S + defaults.RING_TIMEOUT_S + 120),
                 store: Any = None, recording_days: int = defaults.RECORDING_DAYS,
                 purge_every_s: float = defaults.RECORDING_PURGE_INTERVAL_S,
                 settings: Settings | None = None):
        from rq import Queue

        self.settings = settings
        """Where alerts go (committee webhooks, CALLBOT_ALERT_WEBHOOK, CALLBOT_PUBLIC_URL);
        read from the environment when None."""
        self.leading = False
        self.factory = factory
        self.redis = redis
        self.clock = clock
        self.queue = Queue(queue_name, connection=redis)
        self.dead_after_s = dead_after_s
        self.job_timeout_s = job_timeout_s
        self.store = store
        """Where recordings live (``callbot.recordings.AudioStore``); None: the database."""
        self.recording_days = recording_days
        self.purge_every_s = purge_every_s
        self._purged_at: float | None = None
        self._db_back_at: float | None = None
        """When the database answered again after this dispatcher saw it away (monotonic)."""
        self._db_away = False
        self._prerenderer: Any = None
        self._line_down: dict[str, bool] = {}
        """Whether each line worker's line was down when this dispatcher last looked."""
        self._line_up_at: dict[str, datetime] = {}
        """When this dispatcher saw each worker's line come back up (its clock)."""

    # --- one tick -------------------------------------------------------------------------
    def tick(self) -> TickStats:
        stats = TickStats()
        stats.interrupted = self.reconcile_dead_workers()
        self.check_lines()
        stats.requeued = self.requeue_lost_jobs()
        stats.purged = self.purge_recordings()
        with session_scope(self.factory) as s:
            ids = s.scalars(select(Campaign.id).where(Campaign.state == "running")).all()
        for cid in ids:
            n, done = self.dispatch_campaign(cid)
            stats.enqueued += n
            if done:
                stats.finished_campaigns.append(cid)
        return stats

    def dispatch_campaign(self, campaign_id: int) -> tuple[int, bool]:
        """Enqueue due contacts of one campaign up to its free lines; returns (enqueued, over)."""
        now = self.clock()
        new: list[int] = []
        with session_scope(self.factory) as s:
            c = s.get(Campaign, campaign_id)
            if c is None or c.state != "running":
                return 0, False
            open_targets = s.scalar(select(func.count()).select_from(Target).where(
                Target.campaign_id == c.id, Target.state.in_(("pending", "active"))))
            if not open_targets:
                c.state, c.finished_at = "finished", utcnow()
                return 0, True
            windows = Windows.parse(c.windows, c.timezone)
            if not windows.is_open(now):
                return 0, False
            active = s.scalar(select(func.count()).select_from(Attempt).where(
                Attempt.campaign_id == c.id, Attempt.state.in_(("queued", "dialing")))) or 0
            free = c.lines - active
            if free <= 0:
                return 0, False
            due = s.execute(
                select(Target.id, Target.contact_id, Contact.phone)
                .join(Contact, Contact.id == Target.contact_id)
                .where(Target.campaign_id == c.id, Target.state == "pending",
                       (Target.next_at.is_(None)) | (Target.next_at <= now))
                .order_by(Target.next_at.is_not(None), Target.next_at, Target.id)
                .limit(free * 2 + 16)).all()
            if not due:
                return 0, False
            pg = s.get_bind().dialect.name == "postgresql"
            phones = list({r.phone for r in due})
            dnc = set(s.scalars(select(DoNotCall.phone).where(
                _among(DoNotCall.phone, phones, pg))))
            busy_phones = set(s.scalars(select(Attempt.phone).where(
                _among(Attempt.phone, phones, pg), Attempt.state.in_(("queued", "dialing")))))
            day_start = windows.local_day_start(now)
            today = dict(s.execute(
                select(Attempt.phone, func.count()).where(
                    _among(Attempt.phone, phones, pg), Attempt.started_at >= day_start,
                    Attempt.state.in_(DIALLED))
                .group_by(Attempt.phone)).all())
            rows: list[dict[str, Any]] = []
            chosen: list[int] = []
            for r in due:
                if len(rows) >= free:
                    break
                if r.phone in dnc:
                    s.execute(update(Target).where(Target.id == r.id)
                              .values(state="done", result="dnc"))
                    continue
                if r.phone in busy_phones:
                    continue
                if today.get(r.phone, 0) >= c.daily_cap:
                    nxt = windows.next_open(windows.local_day_start(now + timedelta(days=1)))
                    s.execute(update(Target).where(Target.id == r.id).values(next_at=nxt))
                    continue
                busy_phones.add(r.phone)
                rows.append({"campaign_id": c.id, "target_id": r.id, "contact_id": r.contact_id,
                             "phone": r.phone, "state": "queued", "queued_at": now})
                chosen.append(r.id)
            if rows:
                new = _insert_attempts(s, rows, pg)
                s.execute(update(Target).where(_among(Target.id, chosen, pg))
                          .values(state="active"))
        if new:
            prerender = self.prerenderer()
            if prerender is None:
                self._enqueue(new)
            else:  # each call goes out as soon as its prompts are ready
                for aid, job in prerender.prepare(new):
                    prerender.render(job)
                    self._enqueue([aid])
        return len(new), False

    def prerenderer(self) -> Any:
        """Renders attempts' prompts before they are enqueued (callbot.campaign.prerender);
        None without settings or with CALLBOT_PRERENDER=0."""
        if self.settings is None or self.settings.extra.get("prerender", "1") == "0":
            return None
        if self._prerenderer is None:
            from callbot.campaign.prerender import Prerenderer

            self._prerenderer = Prerenderer(self.factory, self.settings, self.redis)
        return self._prerenderer

    def _enqueue(self, attempt_ids: list[int]) -> None:
        """Enqueue ``place_call(id)`` jobs in pipelined batches (RQ job hashes + queue list),
        with no RQ retry: a call job is never re-run by RQ."""
        from rq.job import Job, JobStatus
        from rq.serializers import DefaultSerializer
        from rq.utils import now

        q = self.queue
        # RQ checks a serializer it is given against a typing Protocol, twice per job (half of
        # the Redis half's time for 10,000 jobs); None means the same default serializer unchecked
        serializer = None if q.serializer is DefaultSerializer else q.serializer
        for i in range(0, len(attempt_ids), 1000):
            with self.redis.pipeline(transaction=False) as pipe:
                for aid in attempt_ids[i:i + 1000]:
                    job = Job.create(JOB_FUNC, args=(aid,), connection=self.redis,
                                     id=job_id(aid), timeout=self.job_timeout_s, result_ttl=0,
                                     failure_ttl=86400, origin=q.name,
                                     serializer=serializer)
                    job.enqueued_at = now()
                    job._status = JobStatus.QUEUED
                    job.save(pipeline=pipe)
                    pipe.rpush(q.key, job.id)
                pipe.sadd("rq:queues", q.key)
                pipe.execute()

    # --- retention --------------------------------------------------------------------------
    def purge_recordings(self, force: bool = False) -> int:
        """Every ``purge_every_s`` (or now, *force*): delete recordings older than
        ``recording_days`` (``CALLBOT_RECORDING_DAYS``)."""
        import time

        from callbot import recordings

        mono = time.monotonic()
        if not force and self._purged_at is not None and mono - self._purged_at < self.purge_every_s:
            return 0
        self._purged_at = mono
        store = self.store or recordings.DatabaseStore(self.factory)
        return recordings.purge(self.factory, store, days=self.recording_days, now=self.clock())

    # --- reconciler -------------------------------------------------------------------------
    def reconcile_dead_workers(self) -> int:
        """Workers silent for ``dead_after_s``: their dialing attempts become ``interrupted``
        and the campaign's retry policy decides what happens to each contact."""
        real_now = utcnow()  # heartbeats are wall-clock, whatever the campaign clock says
        cutoff = real_now - timedelta(seconds=self.dead_after_s)
        # while the database was away nobody could write a heartbeat: a worker is only called
        # dead once it had dead_after_s to write one since the database came back (it may have a
        # call up; calling it dead would dial that resident again while she is talking)
        fair = self._db_back_at is None or time.monotonic() - self._db_back_at >= self.dead_after_s
        n = 0
        with session_scope(self.factory) as s:
            late = s.scalars(select(LineWorker).where(
                LineWorker.stopped_at.is_(None), LineWorker.heartbeat_at < cutoff)).all() \
                if fair else []
            # a worker on this host whose process still runs is slow (a loaded box, a long
            # pause of its heartbeat thread), not dead: its calls are up, and re-dialling them
            # would ring a resident twice at once
            dead = [w for w in late if not _runs_here(w.host, w.pid)]
            dead_ids = [w.id for w in dead]
            for w in dead:
                w.stopped_at = real_now
            stopped = select(LineWorker.id).where(LineWorker.stopped_at.is_not(None))
            orphans = s.scalars(select(Attempt).where(
                Attempt.state == "dialing",
                Attempt.worker_id.in_(dead_ids) | Attempt.worker_id.in_(stopped))).all()
            now = self.clock()
            for a in orphans:
                # a dialogue that reached its end (record_end) was answered: the policy then
                # sees completed / callback / stop, not a call to place again
                a.state, a.ended_at = "interrupted", now
                a.outcome = "answered" if a.ended else "interrupted"
                a.error = f"line worker {a.worker_id} died mid-call"
                apply_policy(s, a, now)
                n += 1
        if n:
            log.warning("reconciler: %d attempt(s) interrupted by dead workers", n)
        return n

    # --- the line ---------------------------------------------------------------------------
    def check_lines(self) -> list[tuple[int, str]]:
        """Pause running campaigns while every live line worker's SIP peer is away (the
        registrar, proxy or trunk), with the reason in Chinese; resume the campaigns it paused
        once a line answers again. Returns (campaign id, "paused"/"resumed") changes."""
        from callbot.campaign.service import withdraw_queued

        real_now = utcnow()
        fresh = real_now - timedelta(seconds=self.dead_after_s)
        changes: list[tuple[int, str]] = []
        with session_scope(self.factory) as s:
            live = s.execute(select(LineWorker.id, LineWorker.lines, LineWorker.line_down_since,
                                    LineWorker.line_down_reason)
                             .where(LineWorker.stopped_at.is_(None),
                                    LineWorker.heartbeat_at >= fresh)).all()
            if not live:
                return changes  # no line worker running: nothing to say about the line
            down = [r for r in live if r.line_down_since is not None]
            calls = dict(s.execute(select(Attempt.worker_id, func.count()).where(
                Attempt.state == "dialing", Attempt.worker_id.in_([r.id for r in live]))
                .group_by(Attempt.worker_id)).all())
            for r in live:
                if self._line_down.get(r.id) and r.line_down_since is None:
                    self._line_up_at[r.id] = real_now
                self._line_down[r.id] = r.line_down_since is not None
            latest_down = max((r.line_down_since for r in down), default=None)
            # a worker whose every line is in a call cannot tell (calls up go on without the
            # peer), unless its line came back after the others found it down: right after the
            # peer returns, the first worker to probe fills its lines while the others have yet
            # to probe (this paused campaigns again for a moment); the line is down when no
            # worker that could dial can reach it
            free = [r for r in live if r.line_down_since is None and (
                calls.get(r.id, 0) < r.lines or (
                    latest_down is not None and r.id in self._line_up_at
                    and self._line_up_at[r.id] > latest_down))]
            if down and not free:
                since = min(r.line_down_since for r in down)
                why = down[0].line_down_reason or "SIP 对端无响应"
                what = "线路繁忙" if why.startswith(BUSY_PREFIX) else "线路中断"
                reason = (f"{what}，已自动暂停：{why}（自 {_local(since)} 起）。"
                          "线路恢复后将自动继续。")
                for c in s.scalars(select(Campaign).where(Campaign.state == "running")):
                    c.state, c.pause_reason, c.paused_at = "paused", reason, real_now
                    withdraw_queued(s, c.id, cancel_targets=False)
                    changes.append((c.id, "paused"))
                    log.error("campaign %s paused: %s", c.id, reason)
            else:
                for c in s.scalars(select(Campaign).where(Campaign.state == "paused",
                                                          Campaign.pause_reason.is_not(None))):
                    log.warning("campaign %s resumed: a line answers again (paused %s)", c.id,
                                real_now - (c.paused_at or real_now))
                    c.state, c.pause_reason = "running", None
                    changes.append((c.id, "resumed"))
        return changes

    def requeue_lost_jobs(self) -> int:
        """Queued attempts whose job is not in Redis any more (flush, restart) are enqueued again.

        Dial once still holds: the worker's begin_dialing is an atomic ``queued → dialing`` UPDATE.
        """
        cutoff = self.clock() - timedelta(seconds=REQUEUE_GRACE_S)
        with session_scope(self.factory) as s:
            queued = s.execute(select(Attempt.id, Attempt.queued_at).where(
                Attempt.state == "queued")).all()
        if not queued:
            return 0
        in_queue = {x.decode() if isinstance(x, bytes) else x
                    for x in self.redis.lrange(self.queue.key, 0, -1)}
        # only the attempts whose job is not in the queue have their job hash looked at (each
        # tick asked Redis about every queued attempt: ~5 CPU-ms a tick with 100 queued)
        out = [(aid, queued_at) for aid, queued_at in queued if job_id(aid) not in in_queue]
        if not out:
            return 0
        with self.redis.pipeline() as pipe:
            for aid, _ in out:
                pipe.exists(f"rq:job:{job_id(aid)}")
            exists = pipe.execute()
        lost = []
        for (aid, queued_at), has_hash in zip(out, exists, strict=True):
            if not has_hash or queued_at <= cutoff:
                lost.append(aid)
        if lost:
            with self.redis.pipeline() as pipe:
                for aid in lost:
                    pipe.delete(f"rq:job:{job_id(aid)}")
                pipe.execute()
            self._enqueue(lost)
            log.warning("reconciler: %d queued attempt(s) re-enqueued from SQL", len(lost))
        return len(lost)

    # --- alerts -----------------------------------------------------------------------------
    def deliverer(self) -> Deliverer:
        """The alert deliverer of this dispatcher (the outbox's sender)."""
        from callbot.config import load_settings

        if self.settings is None:
            self.settings = load_settings()
        return Deliverer(self.factory, self.settings)

    def deliver_alerts(self) -> DeliveryStats:
        """One delivery pass over the alerts due now (what the alert thread runs each second)."""
        return self.deliverer().run_once()

    # --- loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval_s: float = defaults.DISPATCH_INTERVAL_S,
            until_idle: bool = False) -> None:
        """Tick until *stop* is set (or, with *until_idle*, until no campaign is running and no
        alert is waiting for its first delivery try). Alerts are delivered meanwhile on a thread
        of this process while it holds the dispatcher lock: a slow webhook never delays dialling."""
        done = threading.Event()
        sender = threading.Thread(target=self.deliverer().loop,
                                  args=(done, defaults.ALERT_POLL_S, lambda: self.leading),
                                  daemon=True, name="alerts")
        sender.start()
        try:
            while not stop.is_set():
                try:
                    self.leading = self._lead(interval_s)
                    if self.leading:
                        self.tick()
                        if self._db_away:
                            self._db_away, self._db_back_at = False, time.monotonic()
                            log.warning("database answers again")
                except Exception as exc:
                    from callbot.db import is_disconnect

                    if is_disconnect(exc):
                        self._db_away = True
                        log.warning("dispatcher tick failed, database away: %s",
                                    str(exc).splitlines()[0][:200])
                    elif _redis_down(exc):
                        log.warning("dispatcher tick failed, Redis away: %s", exc)
                    else:
                        log.exception("dispatcher tick failed; retrying")
                if until_idle and self._idle():
                    return
                self._wait(stop, interval_s)
        finally:
            done.set()
            sender.join(defaults.ALERT_HTTP_TIMEOUT_S + 1)

    def _idle(self) -> bool:
        with session_scope(self.factory) as s:
            if s.scalar(select(func.count()).select_from(Campaign).where(
                    Campaign.state.in_(("running", "paused")))):
                return False
            return not s.scalar(select(func.count()).select_from(Alert).where(
                Alert.delivery.in_(("pending", "sending"))))

    def _lead(self, interval_s: float) -> bool:
        """Hold the per-queue dispatcher lock in Redis; a second dispatcher stays idle."""
        import os
        import socket

        key = f"callbot:dispatcher:lock:{self.queue.name}"
        me = getattr(self, "_ident", None) or f"{socket.gethostname()}-{os.getpid()}-{id(self)}"
        self._ident = me
        ttl = max(5, int(interval_s * 10))
        if self.redis.set(key, me, nx=True, ex=ttl):
            return True
        held = self.redis.get(key)
        if (held.decode() if isinstance(held, bytes) else held) == me:
            self.redis.expire(key, ttl)
            return True
        if not getattr(self, "_warned", False):
            log.warning("another dispatcher holds %s; standing by", key)
            self._warned = True
        return False

    def _wait(self, stop: threading.Event, interval_s: float) -> None:
        """Sleep up to *interval_s*, waking early when a line worker finished a call."""
        try:
            if self.redis.blpop([KICK_KEY], timeout=max(0.01, interval_s)) is not None:
                self.redis.delete(KICK_KEY)
        except Exception:
            stop.wait(interval_s)


def _runs_here(host: str, pid: int) -> bool:
    """Whether line-worker process *pid* of *host* is this host's and still runs (not a
    zombie, and still a callbot worker: a pid can be reused). False when it cannot be told."""
    import socket

    if host != socket.gethostname():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, IndexError):
        return False
    return b"worker" in argv and any(b"callbot" in a for a in argv)


def _redis_down(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def _local(t: datetime) -> str:
    """A naive-UTC time as Beijing wall-clock time, for reasons staff read."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    return t.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%H:%M:%S")


def _among(col: Any, values: list[Any], pg: bool) -> Any:
    """``col IN values``; on PostgreSQL ``col = ANY(array)``, one parameter instead of thousands."""
    if pg:
        item = Integer() if isinstance(values[0], int) else String()
        return col == any_(bindparam(None, values, type_=ARRAY(item)))
    return col.in_(values)


_INSERT_ATTEMPTS_PG = text("""
    INSERT INTO attempts (campaign_id, target_id, contact_id, phone, number, state, completed,
                          queued_at)
    SELECT u.campaign_id, u.target_id, u.contact_id, u.phone, 0, 'queued', false, :queued_at
    FROM unnest(CAST(:campaign_ids AS INTEGER[]), CAST(:target_ids AS INTEGER[]),
                CAST(:contact_ids AS INTEGER[]), CAST(:phones AS VARCHAR[]))
         WITH ORDINALITY AS u(campaign_id, target_id, contact_id, phone, n)
    ORDER BY u.n
    RETURNING id""")


def _insert_attempts(s: Session, rows: list[dict[str, Any]], pg: bool) -> list[int]:
    """Write the ``queued`` attempt rows; their ids in the order of *rows*.

    On PostgreSQL one ``INSERT … SELECT FROM unnest(arrays) RETURNING id`` (one round trip; a
    batched INSERT … VALUES of 10,000 rows took ~1.1 s, mostly the server parsing literals).
    Elsewhere a Core executemany with RETURNING (same columns; the models' defaults apply).
    """
    if pg:
        ids = s.scalars(_INSERT_ATTEMPTS_PG, {
            "queued_at": rows[0]["queued_at"],
            "campaign_ids": [r["campaign_id"] for r in rows],
            "target_ids": [r["target_id"] for r in rows],
            "contact_ids": [r["contact_id"] for r in rows],
            "phones": [r["phone"] for r in rows]}).all()
        return sorted(ids)  # ids are drawn in row order (the ORDER BY)
    table = table_of(Attempt)
    return sorted(s.scalars(insert(table).returning(table.c.id), rows))


def due_now(session: Session, campaign_id: int, now: datetime) -> int:
    """How many of a campaign's contacts are due at *now* (for status pages)."""
    return int(session.scalar(select(func.count()).select_from(Target).where(
        Target.campaign_id == campaign_id, Target.state == "pending",
        (Target.next_at.is_(None)) | (Target.next_at <= now))) or 0)
