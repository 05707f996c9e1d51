"""The call job: ``place_call(attempt_id)``, run by a line worker.

Dial once: the attempt is claimed (``queued`` → ``dialing``, one atomic UPDATE) before the INVITE;
a job whose attempt is not ``queued`` any more does nothing. Each answer is stored the moment it is
heard, and the end of the dialogue (``completed``, ``callback``, ``stop``…) the moment it is reached,
before the goodbye plays (``record_end``): a worker killed after that re-dials no one. The outcome
is stored at hang-up and the retry policy decides what comes next.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from callbot import alerts, defaults, recordings
from callbot.campaign.models import (
    DIALLED,
    Answer,
    Attempt,
    Campaign,
    Contact,
    DoNotCall,
    Target,
)
from callbot.campaign.policy import Clock, RetryPolicy, Windows, system_clock
from callbot.db import changed, retrying, session_scope
from callbot.exceptions import CampaignError

if TYPE_CHECKING:
    from callbot.recordings import AudioStore

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

    factory: sessionmaker[Session]
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
    """Place the call of a queued attempt and store what happens; ``skipped`` when it is not due."""

    def stored_(what: str, fn: Callable[[], Any]) -> Any:
        # what a resident said must survive a database restart: the call waits, the write is
        # tried again (each fn is one whole transaction)
        return retrying(fn, what=f"{what} of attempt {attempt_id}", for_s=ctx.db_retry_s)

    job = stored_("the claim", lambda: begin_dialing(ctx.factory, attempt_id, ctx.worker_id,
                                                     ctx.clock, ctx.committee))
    if job is None:
        return "skipped"
    stored: dict[str, Any] = {}
    store = ctx.store or recordings.DatabaseStore(ctx.factory)
    owner = recordings.Owner(job.attempt_id, job.campaign_id, job.contact_id, job.phone)
    heard_in: dict[str, int] = {}  # answer field -> the reply recording it is about to come from

    compressing: list[Future[int]] = []

    def on_reply(reply: Any) -> None:
        # the row now (answers point at it), the audio compressed and stored off the call's
        # thread: the next prompt must not wait for it
        added = stored_("a reply", lambda: recordings.add_reply(ctx.factory, store.name, owner,
                                                                reply))
        heard_in.clear()
        if added is not None:
            heard_in.update(dict.fromkeys(reply.fields, added[0]))
            compressing.append(_audio_pool().submit(
                recordings.put_audio, ctx.factory, store, added[0], added[1], reply.audio))

    def on_record(name: str, value: Any) -> None:
        rec = heard_in.pop(name, None)

        def write() -> None:
            with session_scope(ctx.factory) as s:
                s.add(Answer(attempt_id=job.attempt_id, campaign_id=job.campaign_id,
                             contact_id=job.contact_id, field=name, value=value,
                             recording_id=rec))
        stored_(f"answer {name}", write)
        stored[name] = value

    def on_heard(records: list[Any], raised: list[Any]) -> None:
        recs = {r.field: heard_in.pop(r.field, None) for r in records}

        def write() -> None:
            # an alert is written in the transaction of the answer that raised it (the outbox)
            with session_scope(ctx.factory) as s:
                for r in records:
                    s.add(Answer(attempt_id=job.attempt_id, campaign_id=job.campaign_id,
                                 contact_id=job.contact_id, field=r.field, value=r.value,
                                 recording_id=recs[r.field]))
                for a in raised:
                    alerts.raise_alert(s, campaign_id=job.campaign_id, contact_id=job.contact_id,
                                       attempt_id=job.attempt_id, reason=a.reason,
                                       urgent=bool(a.urgent), said=str(a.said or ""),
                                       detail=str(getattr(a, "detail", "") or ""))
        stored_("answers and alerts", write)
        stored.update({r.field: r.value for r in records})

    def on_end(reason: str) -> None:
        stored_("the end", lambda: record_end(ctx.factory, job.attempt_id, reason, ctx.clock))

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
        error = _store_call_recording(ctx, store, owner, result.recording) or error
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
        stored_("the give-back", lambda: give_back(ctx.factory, job.attempt_id, why, ctx.clock))
        return "line_down"
    stored_("the outcome", lambda: finish(ctx.factory, job.attempt_id, result, ctx.clock,
                                          error=error))
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


def _store_call_recording(ctx: LineContext, store: AudioStore, owner: recordings.Owner,
                          wav: Path) -> str | None:
    """Keep the whole-call WAV (compressed, in the store), then delete the worker's copy.
    Returns the error for the attempt's row when it could not be stored (the call's answers
    are safe already; its outcome must still be stored)."""
    try:
        recordings.store_call(ctx.factory, store, owner, wav)
        return None
    except Exception as exc:  # noqa: BLE001 - logged and kept on the attempt
        log.exception("could not store the call recording of attempt %s", owner.attempt_id)
        return f"整通录音未能保存 (call recording not stored): {exc}"
    finally:
        wav.unlink(missing_ok=True)


def begin_dialing(factory: sessionmaker[Session], attempt_id: int, worker_id: str,
          clock: Clock = system_clock, default_committee: str | None = None) -> CallJob | None:
    """Turn a queued attempt into ``dialing`` for this worker, or give it back.

    Returns ``None`` (and dials no one) when the attempt is not queued any more, the campaign is
    not running, the calling window is closed, the number is on the do-not-call list or has
    reached its daily cap.
    """
    now = clock()
    with session_scope(factory) as s:
        a = s.get(Attempt, attempt_id)
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
        variables = contact_variables(contact)
        return CallJob(attempt_id=a.id, campaign_id=c.id, contact_id=contact.id, script=c.script,
                       dial=contact.dial, phone=contact.phone, variables=variables,
                       number=number, record_call=bool(c.record_calls),
                       extension=contact.extension or "",
                       tts_personal=c.tts_personal or "online",
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
    from callbot.committees import CommitteeSettings, committee_of_campaign

    committee = committee_of_campaign(s, campaign_id)
    name = committee or default
    cs = s.scalar(select(CommitteeSettings).where(CommitteeSettings.name == name)) \
        if name else None
    return {"committee": committee, "duty_number": cs.duty_number if cs else None,
            "transfer_timeout_s": cs.transfer_timeout_s if cs else None}


def _calls_today(s: Session, phone: str, windows: Windows, now: datetime) -> int:
    start = windows.local_day_start(now)
    return int(s.scalar(select(func.count()).select_from(Attempt).where(
        Attempt.phone == phone, Attempt.started_at >= start,
        Attempt.state.in_(DIALLED))) or 0)


def _next_day(windows: Windows, now: datetime) -> datetime:
    from datetime import timedelta

    return windows.local_day_start(now + timedelta(days=1))


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
    if s.scalar(select(DoNotCall.id).where(DoNotCall.phone == phone)) is None:
        s.add(DoNotCall(phone=phone, reason=reason))
        s.flush()


def _settle_late(s: Session, a: Attempt, now: datetime) -> None:
    """An interrupted attempt turned out to have reached its end: settle its target again."""
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
    reason = UNREACHED.get(t.result or "")
    if reason is None or not alerts.is_welfare(c.script):
        return
    if s.scalar(select(Answer.id).where(Answer.campaign_id == c.id,
                                        Answer.contact_id == t.contact_id,
                                        Answer.field == "welfare").limit(1)) is not None:
        return
    alerts.raise_alert(s, campaign_id=c.id, contact_id=t.contact_id, reason=reason,
                       detail=alerts.attempts_text(s, t.id))
