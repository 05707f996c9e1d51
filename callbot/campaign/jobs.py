"""The call job: ``place_call(attempt_id)``, run by a line worker.

Dial once: the attempt is claimed (``queued`` → ``dialing``, one atomic UPDATE) before the INVITE;
a job whose attempt is not ``queued`` any more does nothing. Each answer is stored the moment it is
heard, and the end of the dialogue (``completed``, ``callback``, ``stop``…) the moment it is reached,
before the goodbye plays (``record_end``): a worker killed after that re-dials no one. The outcome
is stored at hang-up and the retry policy decides what comes next.
"""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from callbot import defaults
from callbot.campaign.policy import Clock, system_clock
from callbot.exceptions import CampaignError
from callbot.recording_audio import Owner

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from callbot.campaign.linestore import LineStore
    from callbot.campaign.models import Attempt, Campaign, Contact, Target
    from callbot.campaign.policy import Windows
    from callbot.recordings import AudioStore

# SQLAlchemy and the models are imported inside the functions that write: a line process whose
# writes go to the host's store process (callbot.campaign.linestore.RpcStore) never loads them.

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallJob:
    """Everything a runner needs to place one call (loaded from SQL by the worker)."""

    attempt_id: int
    campaign_id: int
    contact_id: int
    script: str
    dial: str
    phone: str
    variables: dict[str, Any]
    number: int
    """Attempt number (1 = first call to this contact in this campaign)."""
    committee: str | None = None
    """The committee that owns the campaign (None: the installation's, CALLBOT_COMMITTEE)."""
    duty_number: str | None = None
    """The committee's duty phone for 转人工 (None: the environment's CALLBOT_DUTY_NUMBER)."""
    transfer_timeout_s: float | None = None
    record_call: bool = False
    """The campaign records whole calls (both sides): the runner returns the WAV in
    ``CallOutcome.recording``."""
    extension: str = ""
    """The contact's extension (转123): dialled as DTMF after the answer."""
    tts_personal: str = "online"
    """The campaign's ``tts_personal``: ``offline`` renders the contact's own words (name,
    address…) by espeak-ng on this box, never by the online engine."""


@dataclass
class CallOutcome:
    """What a runner reports at hang-up."""

    outcome: str
    """answered, no_answer, busy, rejected, invalid_number, unreachable, failed."""
    completed: bool = False
    sip_code: int | None = None
    talk_s: float | None = None
    answered_at: datetime | None = None
    ended: str | None = None
    transcript: list[Any] | None = None
    answers: dict[str, Any] = field(default_factory=dict)
    """Answers in the final report; any not yet stored through ``on_record`` are stored too."""
    transfer: dict[str, Any] | None = None
    """转人工 when it was tried: ``to``, ``answered``, ``talk_s`` (``session.CallReport.transfer``)."""
    recording: Path | None = None
    """Whole-call WAV on this host (``CallJob.record_call``): stored, then deleted."""
    announcement: str | None = None
    """What a carrier announcement / voice assistant said (``CallResult.announcement``)."""


OnRecord = Callable[[str, Any], None]
OnEnd = Callable[[str], None]
OnReply = Callable[[Any], None]
"""Called with each ``session.Reply`` (text + audio) before the answers it produced."""
OnHeard = Callable[[list[Any], list[Any]], None]
"""``on_heard(records, alerts)``: the dialogue's Records and Alerts of one reply, stored together."""


class CallRunner(Protocol):
    """Places one call; calls ``on_reply(reply)`` for each spoken reply, then
    ``on_record(field, value)`` for each answer it produced (or, when the runner can,
    ``on_heard(records, alerts)`` with the answers and alerts of one reply together), and
    ``on_end(reason)`` the moment the dialogue ends (before the goodbye plays)."""

    def __call__(self, job: CallJob, on_record: OnRecord, *,
                 on_end: OnEnd | None = None,
                 on_reply: OnReply | None = None,
                 on_heard: OnHeard | None = None) -> CallOutcome: ...


@dataclass
class LineContext:
    """Per-process state of a line worker: set once by the worker before any job runs."""

    factory: sessionmaker[Session] | None
    """This process's database (None: every write goes through ``line_store``)."""
    runner: CallRunner
    worker_id: str
    clock: Clock = system_clock
    notify: Callable[[], None] | None = None
    """Called after each finished call so the dispatcher refills the line at once."""
    store: AudioStore | None = None
    """Where reply audio and call recordings go; None: the database (``DatabaseStore``)."""
    committee: str | None = None
    """The installation's committee (CALLBOT_COMMITTEE): CLI and demo campaigns belong to it."""
    line: Any = None
    """This process's ``line.LineHealth`` (is the SIP peer there); None: never checked."""
    db_retry_s: float = defaults.DB_RETRY_S
    """How long what a call heard is retried while the database is away."""
    line_store: LineStore | None = None
    """Where this process's writes go; None: :class:`InProcessStore` on ``factory``."""

    def writes(self) -> LineStore:
        """The line store of this context (made once)."""
        if self.line_store is None:
            # the context's clock as it is at each write, not as it was when the store was
            # made: a caller may set ``clock`` between calls (a dispatcher tick per round)
            self.line_store = InProcessStore(self.factory, self.store,
                                             clock=lambda: self.clock(),
                                             db_retry_s=self.db_retry_s)
        return self.line_store


_context: LineContext | None = None
_context_lock = threading.Lock()


def set_line_context(ctx: LineContext | None) -> None:
    """Set (or clear) this process's line context before any job runs."""
    global _context
    with _context_lock:
        _context = ctx


def place_call(attempt_id: int) -> str:
    """RQ job body (enqueued by dotted path with the attempt id only). Returns what happened."""
    ctx = _context
    if ctx is None:
        raise CampaignError("place_call 只能在 `callbot worker` 中运行 (runs only in a line worker)")
    return run_attempt(ctx, attempt_id)


def run_attempt(ctx: LineContext, attempt_id: int) -> str:  # noqa: C901
    """Place the call of a queued attempt and store what happens; ``skipped`` when it is not due.

    What a resident said must survive a database (or store process) restart: each write is one
    whole transaction, tried again while the store is away, and the call waits for it."""
    ls = ctx.writes()
    job = ls.begin_dialing(attempt_id, ctx.worker_id, ctx.committee)
    if job is None:
        return "skipped"
    stored: dict[str, Any] = {}
    owner = Owner(job.attempt_id, job.campaign_id, job.contact_id, job.phone)
    heard_in: dict[str, int] = {}  # answer field -> the reply recording it is about to come from

    compressing: list[Future[None]] = []

    def on_reply(reply: Any) -> None:
        # the row now (answers point at it), the audio compressed and stored off the call's
        # thread: the next prompt must not wait for it
        added = ls.add_reply(owner, reply)
        heard_in.clear()
        if added is not None:
            heard_in.update(dict.fromkeys(reply.fields, added[0]))
            compressing.append(_audio_pool().submit(ls.put_audio, added[0], added[1],
                                                    reply.audio))

    def on_record(name: str, value: Any) -> None:
        ls.heard(job, [(name, value, heard_in.pop(name, None))], [])
        stored[name] = value

    def on_heard(records: list[Any], raised: list[Any]) -> None:
        # an alert is written in the transaction of the answer that raised it (the outbox)
        ls.heard(job, [(r.field, r.value, heard_in.pop(r.field, None)) for r in records],
                 [alert_dict(a) for a in raised])
        stored.update({r.field: r.value for r in records})

    def on_end(reason: str) -> None:
        ls.record_end(job.attempt_id, reason)

    error: str | None = None
    try:
        extra: dict[str, Any] = {"on_heard": on_heard} if _takes(ctx.runner, "on_heard") else {}
        if _takes(ctx.runner, "on_reply"):  # runners written before it keep no audio
            extra["on_reply"] = on_reply
        result = ctx.runner(job, on_record, on_end=on_end, **extra)
    except Exception as exc:  # a crashed call is a failed attempt, never an answered one
        log.exception("call for attempt %s crashed", attempt_id)
        result = CallOutcome(outcome="failed", ended="error")
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    heard_in.clear()
    for job_audio in compressing:  # the attempt is finished once its voice is stored
        try:
            job_audio.result()
        except Exception as exc:  # noqa: BLE001 - kept on the attempt; answers are safe
            log.exception("could not store a reply's audio for attempt %s", attempt_id)
            error = error or f"回答录音未能保存 (reply audio not stored): {exc}"
    if result.recording is not None:
        error = _store_call_recording(ls, owner, result.recording) or error
    missing = {k: v for k, v in result.answers.items() if k not in stored}
    for k, v in missing.items():
        on_record(k, v)
    line = ctx.line
    why = line.never_reached(result.outcome, result.sip_code, result.announcement, job.dial) if (
        line is not None and error is None and not missing) else None
    if why is not None:
        # the line is down (nothing came back, the peer does not answer a probe) or the trunk
        # failed the call (503…): it never reached the resident; the contact waits for the
        # line, not for a retry, and none of her tries is used
        ls.give_back(job.attempt_id, why)
        return "line_down"
    ls.finish(job.attempt_id, result, error)
    if ctx.notify is not None:
        try:
            ctx.notify()
        except Exception:  # the dispatcher's own tick catches up
            log.warning("could not wake the dispatcher", exc_info=True)
    return result.outcome


def _takes(fn: Any, name: str) -> bool:
    """Whether a runner (a plug-in point: ``--runner``) accepts keyword *name*; runners written
    before it existed get ``on_record`` only (their alerts are then not raised)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_pool: ThreadPoolExecutor | None = None


def _audio_pool() -> ThreadPoolExecutor:
    """One thread per line-worker process compresses and stores reply audio (Opus encoding
    runs in C, outside the GIL)."""
    global _pool
    with _context_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reply-audio")
        return _pool


def _store_call_recording(ls: LineStore, owner: Owner, wav: Path) -> str | None:
    """Keep the whole-call WAV (compressed, in the store), then delete the worker's copy.
    Returns the error for the attempt's row when it could not be stored (the call's answers
    are safe already; its outcome must still be stored)."""
    try:
        ls.store_call(owner, wav)
        return None
    except Exception as exc:  # noqa: BLE001 - logged and kept on the attempt
        log.exception("could not store the call recording of attempt %s", owner.attempt_id)
        return f"整通录音未能保存 (call recording not stored): {exc}"
    finally:
        wav.unlink(missing_ok=True)


def begin_dialing(factory: sessionmaker[Session], attempt_id: int, worker_id: str,
                  clock: Clock = system_clock, default_committee: str | None = None, *,
                  reclaim: bool = False) -> CallJob | None:
    """Turn a queued attempt into ``dialing`` for this worker, or give it back.

    Returns ``None`` (and dials no one) when the attempt is not queued any more, the campaign is
    not running, the calling window is closed, the number is on the do-not-call list or has
    reached its daily cap. *reclaim* (a claim sent again after its answer was lost: the store
    process died after the commit) takes back the attempt this worker already turned into
    ``dialing`` — its line has not dialled it, it was waiting for that answer.
    """
    from sqlalchemy import select, update

    from callbot.campaign.models import Attempt, Campaign, Contact, DoNotCall, Target
    from callbot.campaign.policy import Windows
    from callbot.db import changed, session_scope

    now = clock()
    with session_scope(factory) as s:
        a = s.get(Attempt, attempt_id)
        if a is not None and reclaim and a.state == "dialing" and a.worker_id == worker_id:
            c, contact = s.get(Campaign, a.campaign_id), s.get(Contact, a.contact_id)
            assert c is not None and contact is not None
            return _call_job(s, a, c, contact, a.number, default_committee)
        if a is None or a.state != "queued":
            return None
        c = s.get(Campaign, a.campaign_id)
        t = s.get(Target, a.target_id)
        contact = s.get(Contact, a.contact_id)
        assert c is not None and t is not None and contact is not None
        windows = Windows.parse(c.windows, c.timezone)
        reason = None
        next_at: datetime | None = None
        if c.state != "running":
            reason = f"campaign {c.state}"
        elif not windows.is_open(now):
            reason = "window closed"
            next_at = windows.next_open(now)
        elif s.scalar(select(DoNotCall.id).where(DoNotCall.phone == a.phone)) is not None:
            reason = "do not call"
        elif _calls_today(s, a.phone, windows, now) >= c.daily_cap:
            reason = "daily cap"
            next_at = windows.next_open(_next_day(windows, now))
        if reason is not None:
            n = changed(s, update(Attempt).where(Attempt.id == a.id, Attempt.state == "queued")
                        .values(state="cancelled", error=reason, ended_at=now))
            if n and t.state == "active":
                if reason == "do not call":
                    t.state, t.result = "done", "dnc"
                elif c.state == "cancelled":
                    t.state, t.result = "done", "cancelled"
                else:
                    t.state, t.next_at = "pending", next_at
            return None
        number = t.attempts + 1
        n = changed(s, update(Attempt).where(Attempt.id == a.id, Attempt.state == "queued")
                    .values(state="dialing", worker_id=worker_id, started_at=now, number=number))
        if n != 1:
            return None
        t.attempts = number
        return _call_job(s, a, c, contact, number, default_committee)


def _call_job(s: Session, a: Attempt, c: Campaign, contact: Contact, number: int,
              default_committee: str | None) -> CallJob:
    return CallJob(attempt_id=a.id, campaign_id=c.id, contact_id=contact.id, script=c.script,
                   dial=contact.dial, phone=contact.phone, variables=contact_variables(contact),
                   number=number, record_call=bool(c.record_calls),
                   extension=contact.extension or "", tts_personal=c.tts_personal or "online",
                   **_committee_of(s, c.id, default_committee))


def contact_variables(contact: Contact) -> dict[str, Any]:
    """What a script sees of a contact: its columns plus name / 姓名, address / 地址, note and
    phone."""
    variables = dict(contact.variables or {})
    variables.update({"name": contact.name, "姓名": contact.name, "address": contact.address,
                      "地址": contact.address, "note": contact.note, "phone": contact.phone})
    return variables


def _committee_of(s: Session, campaign_id: int, default: str | None) -> dict[str, Any]:
    """The campaign's committee and its duty phone (CallJob fields)."""
    from sqlalchemy import select

    from callbot.committees import CommitteeSettings, committee_of_campaign

    committee = committee_of_campaign(s, campaign_id)
    name = committee or default
    cs = s.scalar(select(CommitteeSettings).where(CommitteeSettings.name == name)) \
        if name else None
    return {"committee": committee, "duty_number": cs.duty_number if cs else None,
            "transfer_timeout_s": cs.transfer_timeout_s if cs else None}


def _calls_today(s: Session, phone: str, windows: Windows, now: datetime) -> int:
    from sqlalchemy import func, select

    from callbot.campaign.models import DIALLED, Attempt

    start = windows.local_day_start(now)
    return int(s.scalar(select(func.count()).select_from(Attempt).where(
        Attempt.phone == phone, Attempt.started_at >= start,
        Attempt.state.in_(DIALLED))) or 0)


def _next_day(windows: Windows, now: datetime) -> datetime:
    from datetime import timedelta

    return windows.local_day_start(now + timedelta(days=1))


def store_heard(factory: sessionmaker[Session], attempt_id: int, campaign_id: int,
                contact_id: int, records: list[tuple[str, Any, int | None]],
                raised: list[dict[str, Any]], *, again: bool = False) -> None:
    """Answers heard in a call — (field, value, reply recording id) — and the alerts they raised,
    in one transaction (the alert outbox). *again* (a request sent again after its answer was
    lost): nothing is written when its first answer is stored already (it was one commit)."""
    from sqlalchemy import select

    from callbot import alerts
    from callbot.campaign.models import Answer
    from callbot.db import session_scope

    with session_scope(factory) as s:
        if again and records:
            name, value, rec = records[0]
            q = select(Answer.id, Answer.value).where(
                Answer.attempt_id == attempt_id, Answer.field == name,
                Answer.recording_id.is_(None) if rec is None else Answer.recording_id == rec)
            if any(v == value for _i, v in s.execute(q)):
                return
        for name, value, rec in records:
            s.add(Answer(attempt_id=attempt_id, campaign_id=campaign_id, contact_id=contact_id,
                         field=name, value=value, recording_id=rec))
        for a in raised:
            alerts.raise_alert(s, campaign_id=campaign_id, contact_id=contact_id,
                               attempt_id=attempt_id, reason=a["reason"],
                               urgent=bool(a.get("urgent")), said=str(a.get("said") or ""),
                               detail=str(a.get("detail") or ""))


def worker_started(factory: sessionmaker[Session], worker_id: str, host: str, pid: int,
                   lines: int, down_since: datetime | None, reason: str | None) -> None:
    """A line-worker process's row (the web app's 线路工作进程 page; the reconciler's heartbeat)."""
    from callbot.campaign.models import LineWorker
    from callbot.db import session_scope

    with session_scope(factory) as s:
        if s.get(LineWorker, worker_id) is None:
            s.add(LineWorker(id=worker_id, host=host, pid=pid, lines=lines,
                             line_down_since=down_since, line_down_reason=reason))


def worker_heartbeat(factory: sessionmaker[Session], worker_id: str,
                     down_since: datetime | None, reason: str | None) -> int:
    """One heartbeat; 0 when the reconciler declared this worker dead (its row is stopped).

    A Core statement built once on the engine, not an ORM session: ~4 heartbeats a call at 100
    lines reach the store process, 1.0 → 0.3 CPU-ms each (same UPDATE, same transaction)."""
    from callbot.campaign.models import utcnow

    engine = factory.kw["bind"]
    with engine.begin() as conn:
        return int(conn.execute(_heartbeat_statement(), {
            "worker": worker_id, "at": utcnow(), "since": down_since, "why": reason}).rowcount)


@functools.cache
def _heartbeat_statement() -> Any:
    from sqlalchemy import bindparam, update

    from callbot.campaign.models import LineWorker
    from callbot.db import table_of

    t = table_of(LineWorker)
    return update(t).where(t.c.id == bindparam("worker"), t.c.stopped_at.is_(None)).values(
        heartbeat_at=bindparam("at"), line_down_since=bindparam("since"),
        line_down_reason=bindparam("why"))


def worker_stopped(factory: sessionmaker[Session], worker_id: str) -> None:
    """A line-worker process stopped (its row stays, for the web app)."""
    from sqlalchemy import update

    from callbot.campaign.models import LineWorker, utcnow
    from callbot.db import session_scope

    with session_scope(factory) as s:
        s.execute(update(LineWorker).where(LineWorker.id == worker_id,
                                           LineWorker.stopped_at.is_(None))
                  .values(stopped_at=utcnow()))


COMPLETING = ("completed", "transfer", "transfer_failed")
"""Ends after which the contact is not called again: the script ran out, or a person took over
(the duty phone, or the urgent call-back the failed transfer raised)."""


def record_end(factory: sessionmaker[Session], attempt_id: int, reason: str,
               clock: Clock = system_clock) -> None:
    """The dialogue ended with *reason*: store it on the attempt now, in its own transaction,
    while the goodbye is still to play. ``completed`` marks the attempt completed (the reconciler
    and the retry policy then never dial the contact again); ``stop`` also puts the number on
    the do-not-call list; every reason is kept in ``ended`` (``callback`` is retried by its own
    rule even when the worker dies before hang-up)."""
    from callbot.campaign.models import Attempt
    from callbot.db import session_scope

    now = clock()
    with session_scope(factory) as s:
        a = s.get(Attempt, attempt_id)
        if a is None or a.state not in ("dialing", "interrupted"):
            return
        a.ended = reason
        a.completed = reason in COMPLETING
        if reason == "stop":
            _add_do_not_call(s, a.phone, "居民要求不再来电 (stop, heard in a call)")
        if a.state == "interrupted":
            # the reconciler took this worker for dead while its call went on: the decision
            # heard now still holds (a retry it queued is withdrawn)
            a.outcome = "answered"
            _settle_late(s, a, now)


def _add_do_not_call(s: Session, phone: str, reason: str) -> None:
    from sqlalchemy import select

    from callbot.campaign.models import DoNotCall

    if s.scalar(select(DoNotCall.id).where(DoNotCall.phone == phone)) is None:
        s.add(DoNotCall(phone=phone, reason=reason))
        s.flush()


def _settle_late(s: Session, a: Attempt, now: datetime) -> None:
    """An interrupted attempt turned out to have reached its end: settle its target again."""
    from sqlalchemy import update

    from callbot.campaign.models import Attempt, Target

    t = s.get(Target, a.target_id)
    if t is None:
        return
    final = "completed" if a.completed else "dnc" if a.ended == "stop" else None
    if final is None:
        return
    t.state, t.result, t.next_at = "done", final, None
    s.execute(update(Attempt).where(Attempt.target_id == t.id, Attempt.state == "queued")
              .values(state="cancelled", error=f"{final} late", ended_at=now))


def finish(factory: sessionmaker[Session], attempt_id: int, result: CallOutcome,
           clock: Clock = system_clock, *, error: str | None = None) -> None:
    """Store the outcome of a dialled attempt and let the retry policy move its target."""
    from callbot.campaign.models import Attempt
    from callbot.db import session_scope

    now = clock()
    with session_scope(factory) as s:
        a = s.get(Attempt, attempt_id)
        if a is None or a.state != "dialing":
            # the reconciler already called it interrupted: keep the late truth on the row
            if a is not None and a.state == "interrupted":
                a.outcome = result.outcome
                a.completed = a.completed or result.completed
                a.sip_code = result.sip_code
                a.talk_seconds = result.talk_s
                a.answered_at = result.answered_at
                a.ended = result.ended or a.ended  # a call-back request counts on the next decision
                a.transcript = result.transcript
                a.announcement = result.announcement
                _store_transfer(a, result.transfer)
                if a.ended == "stop":
                    _add_do_not_call(s, a.phone, "居民要求不再来电 (stop, heard in a call)")
                _settle_late(s, a, now)  # the worker was only slow: its call did finish
            return
        a.state = "finished"
        a.outcome = result.outcome
        # the end heard mid-call (record_end) stands whatever the hang-up looked like
        a.completed = a.completed or bool(result.completed and result.outcome == "answered")
        a.sip_code = result.sip_code
        a.talk_seconds = result.talk_s
        a.answered_at = result.answered_at
        a.ended = result.ended or a.ended
        if a.ended == "stop":
            _add_do_not_call(s, a.phone, "居民要求不再来电 (stop, heard in a call)")
        _store_transfer(a, result.transfer)
        a.ended_at = now
        a.transcript = result.transcript
        a.announcement = result.announcement
        a.error = error
        apply_policy(s, a, now)


def give_back(factory: sessionmaker[Session], attempt_id: int, reason: str,
              clock: Clock = system_clock) -> None:
    """The line was down when this attempt was dialled: it never reached the resident. The
    attempt is cancelled (not counted against the contact's tries or daily cap) and the contact
    waits for the line."""
    from sqlalchemy import update

    from callbot.campaign.models import Attempt, Campaign, Target
    from callbot.db import changed, session_scope

    now = clock()
    with session_scope(factory) as s:
        n = changed(s, update(Attempt).where(Attempt.id == attempt_id, Attempt.state == "dialing")
                    .values(state="cancelled", outcome="unreachable", ended_at=now,
                            error=f"线路中断，未接通居民 (line down): {reason}"[:2000]))
        if not n:
            return
        a = s.get(Attempt, attempt_id)
        assert a is not None
        t = s.get(Target, a.target_id)
        c = s.get(Campaign, a.campaign_id)
        if t is None or t.state != "active":
            return
        t.attempts = max(0, t.attempts - 1)
        if c is not None and c.state == "cancelled":
            t.state, t.result = "done", "cancelled"
        else:
            t.state, t.next_at = "pending", None


def _store_transfer(a: Attempt, transfer: dict[str, Any] | None) -> None:
    if transfer:
        a.transfer_to = str(transfer.get("to") or "")[:200]
        a.transfer_answered = bool(transfer.get("answered"))
        a.transfer_talk_s = transfer.get("talk_s")


def apply_policy(s: Session, a: Attempt, now: datetime) -> None:
    """Move the attempt's target after the attempt ended (finished or interrupted)."""
    from sqlalchemy import func, select

    from callbot.campaign.models import Attempt, Campaign, Target
    from callbot.campaign.policy import RetryPolicy

    t = s.get(Target, a.target_id)
    c = s.get(Campaign, a.campaign_id)
    assert t is not None and c is not None
    t.last_outcome = a.outcome
    if t.state == "done":
        return
    if a.ended == "stop":  # "不要再打了": on the do-not-call list since it was heard
        t.state, t.result, t.next_at = "done", "dnc", None
        return
    if a.ended in ("human", "emergency"):  # a person must call back: the robot does not retry
        t.state, t.result, t.next_at = "done", a.ended, None
        return
    policy = RetryPolicy.from_json(c.retry_policy)
    callback_asked = a.ended == "callback" or bool(s.scalar(select(func.count()).where(
        Attempt.target_id == t.id, Attempt.ended == "callback")))
    result, next_at = policy.decide(a.outcome or "failed", a.completed, t.attempts, now,
                                    ended=a.ended, callback_asked=callback_asked)
    if result is None and c.state == "cancelled":
        result = "cancelled"
    if result is not None:
        t.state, t.result, t.next_at = "done", result, None
        _alert_if_unreached(s, c, t)
    else:
        t.state, t.next_at = "pending", next_at


UNREACHED = {"unreachable": "unreachable", "invalid_number": "unreachable",
             "incomplete": "unreachable", "callback": "callback"}
"""Final results of a welfare contact that nobody heard from, and the alert each raises."""


def _alert_if_unreached(s: Session, c: Campaign, t: Target) -> None:
    """A welfare contact done without an answer about her welfare: alert (same transaction)."""
    from sqlalchemy import select

    from callbot import alerts
    from callbot.campaign.models import Answer

    reason = UNREACHED.get(t.result or "")
    if reason is None or not alerts.is_welfare(c.script):
        return
    if s.scalar(select(Answer.id).where(Answer.campaign_id == c.id,
                                        Answer.contact_id == t.contact_id,
                                        Answer.field == "welfare").limit(1)) is not None:
        return
    alerts.raise_alert(s, campaign_id=c.id, contact_id=t.contact_id, reason=reason,
                       detail=alerts.attempts_text(s, t.id))


def alert_dict(a: Any) -> dict[str, Any]:
    """One dialogue Alert as the store takes it."""
    return {"reason": a.reason, "urgent": bool(a.urgent), "said": str(a.said or ""),
            "detail": str(getattr(a, "detail", "") or "")}


class InProcessStore:
    """The ``jobs.*`` functions on this process's session factory, each retried while the
    database is away (each is one whole transaction)."""

    def __init__(self, factory: Any, audio: Any = None, *, clock: Any = None,
                 db_retry_s: float = defaults.DB_RETRY_S):
        from callbot import recordings
        from callbot.campaign.policy import system_clock

        self.factory = factory
        self.audio = audio or recordings.DatabaseStore(factory)
        self.clock = clock or system_clock
        self.db_retry_s = db_retry_s

    def _stored(self, what: str, fn: Callable[[], Any]) -> Any:
        from callbot.db import retrying

        return retrying(fn, what=what, for_s=self.db_retry_s)

    def ready(self) -> bool:
        return True

    def begin_dialing(self, attempt_id: int, worker_id: str,
                      committee: str | None) -> CallJob | None:
        return self._stored(f"the claim of attempt {attempt_id}", lambda: begin_dialing(
            self.factory, attempt_id, worker_id, self.clock, committee))

    def add_reply(self, owner: Owner, reply: Any) -> tuple[int, str] | None:
        from callbot import recordings

        return self._stored(f"a reply of attempt {owner.attempt_id}", lambda: recordings.add_reply(
            self.factory, self.audio.name, owner, reply))

    def put_audio(self, rec_id: int, key: str, pcm: bytes) -> None:
        from callbot import recordings

        recordings.put_audio(self.factory, self.audio, rec_id, key, pcm)

    def heard(self, job: CallJob, records: list[tuple[str, Any, int | None]],
              alerts: list[dict[str, Any]]) -> None:
        self._stored(f"answers and alerts of attempt {job.attempt_id}", lambda: store_heard(
            self.factory, job.attempt_id, job.campaign_id, job.contact_id, records, alerts))

    def record_end(self, attempt_id: int, reason: str) -> None:
        self._stored(f"the end of attempt {attempt_id}", lambda: record_end(
            self.factory, attempt_id, reason, self.clock))

    def store_call(self, owner: Owner, wav: Path) -> None:
        from callbot import recordings

        recordings.store_call(self.factory, self.audio, owner, wav)

    def finish(self, attempt_id: int, result: CallOutcome, error: str | None) -> None:
        self._stored(f"the outcome of attempt {attempt_id}", lambda: finish(
            self.factory, attempt_id, result, self.clock, error=error))

    def give_back(self, attempt_id: int, reason: str) -> None:
        self._stored(f"the give-back of attempt {attempt_id}", lambda: give_back(
            self.factory, attempt_id, reason, self.clock))

    def worker_started(self, worker_id: str, host: str, pid: int, lines: int,
                       down_since: datetime | None, reason: str | None) -> None:
        worker_started(self.factory, worker_id, host, pid, lines, down_since, reason)

    def heartbeat(self, worker_id: str, down_since: datetime | None,
                  reason: str | None) -> int:
        return worker_heartbeat(self.factory, worker_id, down_since, reason)

    def worker_stopped(self, worker_id: str) -> None:
        worker_stopped(self.factory, worker_id)
