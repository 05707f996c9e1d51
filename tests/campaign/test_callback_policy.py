"""A resident who says 现在没空 is called back: the ``callback`` retry rule, its final result when
the call back never gets through, the calling windows, and how reports count it.

The policy tests are pure; the campaign test runs the real dispatcher, begin_dialing, retry policy,
SQLite database and reports, and the real dialogue engine over the built-in welfare_check
template with typed replies (the telephony is in test_real_calls.py)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from callbot import reports
from callbot.campaign import service
from callbot.campaign.dispatcher import Dispatcher
from callbot.campaign.jobs import CallJob, CallOutcome, LineContext, OnEnd, OnRecord, run_attempt
from callbot.campaign.models import Attempt, Contact, Target
from callbot.campaign.policy import RetryPolicy
from callbot.db import session_scope
from callbot.dialogue import DialogueEngine, HangUp, Heard, Record
from callbot.script import load_script
from tests.campaign.conftest import make_env, numbers, setup_campaign

NOW = datetime(2026, 1, 1, 2, 0)


# --- the rule -----------------------------------------------------------------------------------

def test_callback_is_retried_by_its_own_rule() -> None:
    p = RetryPolicy.from_json(None)
    assert p.rules["callback"] == {"retry": True, "max_attempts": 3, "delay_s": 7200}
    # answered, the dialogue ended callback: not completed, called again in two hours
    assert p.decide("answered", False, 1, NOW, ended="callback") == (None, NOW + timedelta(hours=2))
    assert p.decide("answered", False, 2, NOW, ended="callback") == (None, NOW + timedelta(hours=2))
    assert p.decide("answered", False, 3, NOW, ended="callback") == ("callback", None)
    # any other unfinished dialogue is still `incomplete` (2 attempts, 30 min)
    assert p.decide("answered", False, 1, NOW, ended="no_match") == (None, NOW + timedelta(minutes=30))
    assert p.decide("answered", False, 2, NOW, ended="no_match") == ("incomplete", None)
    assert p.decide("answered", True, 1, NOW, ended="completed") == ("completed", None)


def test_callback_rule_is_overridable_like_the_others() -> None:
    p = RetryPolicy.from_json({"callback": {"delay_s": 600, "max_attempts": 5}})
    assert p.decide("answered", False, 4, NOW, ended="callback") == (None, NOW + timedelta(minutes=10))
    assert p.decide("answered", False, 5, NOW, ended="callback") == ("callback", None)
    # --retry-delay sets the other rules' delay, not the call back's two hours (nor 关机's,
    # 语音助手's); --max-attempts sets every retryable rule's attempts, callback included
    fast = RetryPolicy.from_json({"delay_s": 5, "max_attempts": 2})
    assert fast.decide("answered", False, 1, NOW, ended="callback") == (None, NOW + timedelta(hours=2))
    assert fast.decide("answered", False, 2, NOW, ended="callback") == ("callback", None)
    for later in ("powered_off", "assistant"):
        assert fast.decide(later, False, 1, NOW) == (None, NOW + timedelta(hours=2))
        assert fast.decide(later, False, 2, NOW) == ("unreachable", None)
    assert fast.decide("no_answer", False, 1, NOW) == (None, NOW + timedelta(seconds=5))
    assert fast.decide("interrupted", False, 1, NOW) == (None, NOW + timedelta(seconds=5))
    # the campaign sets a delay for that outcome: it stands
    own = RetryPolicy.from_json({"delay_s": 5, "callback": {"delay_s": 60},
                                 "powered_off": {"delay_s": 600}})
    assert own.decide("answered", False, 1, NOW, ended="callback") == (None, NOW + timedelta(minutes=1))
    assert own.decide("powered_off", False, 1, NOW) == (None, NOW + timedelta(minutes=10))
    assert own.decide("assistant", False, 1, NOW) == (None, NOW + timedelta(hours=2))
    never = RetryPolicy.from_json({"callback": {"retry": False}})
    assert never.decide("answered", False, 1, NOW, ended="callback") == ("callback", None)


def test_a_promised_call_back_that_never_gets_through_ends_callback() -> None:
    p = RetryPolicy.from_json(None)
    # asked on attempt 1, nobody answered attempts 2 and 3
    assert p.decide("no_answer", False, 2, NOW, callback_asked=True) == (None, NOW + timedelta(minutes=30))
    assert p.decide("no_answer", False, 3, NOW, callback_asked=True) == ("callback", None)
    assert p.decide("no_answer", False, 3, NOW) == ("unreachable", None)
    assert p.decide("answered", False, 3, NOW, ended="hung_up", callback_asked=True) == ("callback", None)
    assert p.decide("invalid_number", False, 2, NOW, callback_asked=True) == ("invalid_number", None)
    # the callback rule's attempts hold even when the later outcome's own rule allows fewer
    p5 = RetryPolicy.from_json({"callback": {"max_attempts": 5}})
    assert p5.decide("rejected", False, 2, NOW, callback_asked=True)[0] is None
    assert p5.decide("rejected", False, 5, NOW, callback_asked=True) == ("callback", None)
    assert p5.decide("rejected", False, 2, NOW) == ("unreachable", None)


# --- a campaign ---------------------------------------------------------------------------------

BUSY = "我现在没空，晚点再打"
# per contact, what each attempt does: typed replies to the real dialogue, or nobody answering
PLAN: list[list[list[str] | str]] = [
    [[BUSY], ["挺好的", "不需要"]],          # 0: asked for a call back, completed on the 2nd call
    [["我在忙"], ["等会儿再打"], ["没空"]],    # 1: busy every time: out of attempts → callback
    [["不太好"]],                           # 2: needs help at once
    ["no_answer"],                          # 3: never answers → unreachable
    [["挺好的", "现在不方便"], "no_answer"],  # 4: ok recorded, then busy, then never reached
    [["我不舒服，晚点再打"]],                  # 5: unwell and busy: a visit, not a call back
]
SHANGHAI_10 = datetime(2026, 3, 2, 2, 0)  # 10:00 in Shanghai


def typed_runner(plan: dict[str, list[list[str] | str]]):  # type: ignore[no-untyped-def]
    """A line runner that answers with the real dialogue engine, the resident typing *plan*."""

    def run(job: CallJob, on_record: OnRecord, *, on_end: OnEnd | None = None,
            **_: Any) -> CallOutcome:
        turns = plan[job.dial]
        step = turns[min(job.number, len(turns)) - 1]
        if step == "no_answer":
            return CallOutcome(outcome="no_answer", sip_code=487)
        engine = DialogueEngine(load_script(job.script), job.variables, committee="幸福里居委会")
        actions = engine.start()
        for reply in step:
            actions = engine.on(Heard(reply))
            for a in actions:
                if isinstance(a, Record):
                    on_record(a.field, a.value)
                elif isinstance(a, HangUp) and on_end is not None:
                    on_end(a.reason)
            if engine.ended:
                break
        # what callbot.campaign.runner.SipRunner reports for a call
        return CallOutcome(outcome="answered", completed=engine.ended == "completed",
                           sip_code=200, talk_s=12.0, ended=engine.ended,
                           transcript=engine.transcript, answers=dict(engine.answers))

    return run


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    return make_env(tmp_path / "var", None, None)


def _round(env, clock: datetime, ctx: LineContext) -> int:  # type: ignore[no-untyped-def]
    """One dispatcher tick at *clock* and every attempt it queued run; how many were placed."""
    factory = env.factory()
    d = Dispatcher(factory, env.redis(), clock=lambda: clock, queue_name="inproc-cb")
    ctx.clock = lambda: clock
    d.tick()
    with session_scope(factory) as s:
        queued = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).all()
    for aid in queued:
        run_attempt(ctx, aid)
    env.redis().delete("rq:queue:inproc-cb")
    return len(queued)


def _targets(factory) -> dict[int, Target]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        rows = s.execute(select(Contact.row, Target).join(Target, Target.contact_id == Contact.id)
                         ).all()
        for _, t in rows:
            s.expunge(t)
    return {row - 2: t for row, t in rows}  # contact row 2 is the first data row


def test_welfare_campaign_calls_back_and_reports_it(env) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(len(PLAN))
    cid = setup_campaign(factory, nums, lines=8, script="welfare_check",
                         windows="09:00-11:30,14:00-20:00",
                         policy={"no_answer": {"delay_s": 1800}})  # otherwise the defaults
    ctx = LineContext(factory=factory, runner=typed_runner(dict(zip(nums, PLAN, strict=True))),
                      worker_id="t")

    assert _round(env, SHANGHAI_10, ctx) == 6
    t = _targets(factory)
    for i in (0, 1, 4):  # asked for a call back: pending, due two hours later (12:00 local)
        assert (t[i].state, t[i].result) == ("pending", None), i
        assert t[i].next_at == SHANGHAI_10 + timedelta(hours=2)
    assert (t[2].state, t[2].result) == ("done", "completed")
    assert (t[5].state, t[5].result) == ("done", "completed")
    assert t[3].next_at == SHANGHAI_10 + timedelta(minutes=30)
    with session_scope(factory) as s:
        busy = s.scalars(select(Attempt).where(Attempt.ended == "callback")).all()
        assert len(busy) == 3 and all(a.outcome == "answered" and not a.completed for a in busy)

    # 10:30 and 11:00: only the unreachable resident is retried
    assert _round(env, SHANGHAI_10 + timedelta(minutes=30), ctx) == 1
    assert _round(env, SHANGHAI_10 + timedelta(minutes=60), ctx) == 1
    assert _targets(factory)[3].result == "unreachable"
    # 12:00: the call backs are due, but the window (11:30–14:00) is closed: nobody is dialled
    assert _round(env, SHANGHAI_10 + timedelta(hours=2), ctx) == 0
    # 14:00: the window opens and the three call backs are placed
    assert _round(env, SHANGHAI_10 + timedelta(hours=4), ctx) == 3
    t = _targets(factory)
    assert (t[0].state, t[0].result, t[0].attempts) == ("done", "completed", 2)
    assert (t[1].state, t[1].attempts) == ("pending", 2)
    assert t[1].next_at == SHANGHAI_10 + timedelta(hours=6)
    assert (t[4].state, t[4].attempts) == ("pending", 2)  # no answer this time: 30 min
    assert _round(env, SHANGHAI_10 + timedelta(hours=4, minutes=30), ctx) == 1  # contact 4
    assert _round(env, SHANGHAI_10 + timedelta(hours=6), ctx) == 1  # contact 1, busy again
    t = _targets(factory)
    assert (t[1].state, t[1].result, t[1].attempts) == ("done", "callback", 3)
    assert (t[4].state, t[4].result, t[4].attempts) == ("done", "callback", 3)
    assert _round(env, SHANGHAI_10 + timedelta(hours=9), ctx) == 0

    with session_scope(factory) as s:
        assert service.status(s, cid).state == "finished"
        rep = reports.full_report(s, cid)
        raw = reports.export_csv(s, cid)
        xlsx = reports.export_xlsx(s, cid)

    # answered calls that asked for a call back count as answered, never as completed
    assert rep["contacts"] == 6
    assert rep["attempts"] == 2 + 3 + 1 + 3 + 3 + 1 == 13
    assert rep["answered_attempts"] == 2 + 3 + 1 + 0 + 1 + 1 == 8
    assert rep["reached_contacts"] == 5
    assert rep["completed_contacts"] == 3 and rep["completion_rate"] == 0.5
    assert rep["results"] == {"completed": 3, "callback": 2, "unreachable": 1}
    assert rep["callback_contacts"] == 3  # asked at least once (contact 0 was then completed)

    w = rep["welfare"]
    assert w["counts"] == {"ok": 2, "needs_help": 2, "urgent": 0, "human": 0, "callback": 1,
                           "unreachable": 1, "other": 0, "pending": 0}  # contact 4 said 挺好的 first: ok
    assert [(d["row"] - 2, d["reason"]) for d in w["follow_up"]] == [
        (2, "needs_help"), (5, "needs_help"), (1, "callback"), (3, "unreachable")]

    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    result_col = rows[0].index("结果")
    assert [r[result_col] for r in rows[1:]] == [
        "已完成", "约定回电未接通", "已完成", "联系不上", "约定回电未接通", "已完成"]
    wb = openpyxl.load_workbook(io.BytesIO(xlsx))
    care = list(wb["关怀"].iter_rows(values_only=True))
    assert [r[4] for r in care[1:]] == ["需要帮助", "需要帮助", "约定回电未接通", "联系不上"]
    assert [r[0] - 2 for r in care[1:]] == [2, 5, 1, 3]


def test_late_call_back_request_of_an_interrupted_attempt_counts(env) -> None:  # type: ignore[no-untyped-def]
    """The reconciler called an attempt interrupted (its worker looked dead), then the slow worker
    reported that the resident asked to be called back: the row keeps how the call ended, so when
    the later attempts get nobody, the result is callback, not unreachable."""
    from callbot.campaign.jobs import apply_policy, begin_dialing, finish

    factory = env.factory()
    nums = numbers(1)
    setup_campaign(factory, nums, lines=1, script="welfare_check", windows="00:00-23:59",
                   policy={"delay_s": 60, "max_attempts": 3})
    d = Dispatcher(factory, env.redis(), clock=lambda: SHANGHAI_10, queue_name="inproc-cb")
    d.tick()
    env.redis().delete("rq:queue:inproc-cb")
    with session_scope(factory) as s:
        aid = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).one()
    assert begin_dialing(factory, aid, "t", clock=lambda: SHANGHAI_10) is not None
    with session_scope(factory) as s:  # what the reconciler does to a dead worker's attempt
        a = s.get(Attempt, aid)
        assert a is not None
        a.state, a.outcome, a.ended_at = "interrupted", "interrupted", SHANGHAI_10
        apply_policy(s, a, SHANGHAI_10)
    engine = DialogueEngine(load_script("welfare_check"), {"姓名": "张阿姨"}, committee="幸福里")
    engine.start()
    engine.on(Heard(BUSY))
    assert engine.ended == "callback"
    finish(factory, aid, CallOutcome(outcome="answered", completed=False, sip_code=200,
                                     talk_s=8.0, ended=engine.ended,
                                     transcript=engine.transcript),
           clock=lambda: SHANGHAI_10)
    with session_scope(factory) as s:
        a = s.get(Attempt, aid)
        assert (a.state, a.outcome, a.ended) == ("interrupted", "answered", "callback")
        assert any(BUSY in (line.get("text") or "") for line in a.transcript)

    ctx = LineContext(factory=factory, runner=typed_runner({nums[0]: ["no_answer"] * 3}),
                      worker_id="t")
    assert _round(env, SHANGHAI_10 + timedelta(hours=1), ctx) == 1
    assert _round(env, SHANGHAI_10 + timedelta(hours=2), ctx) == 1
    t = _targets(factory)[0]
    assert (t.state, t.result, t.attempts) == ("done", "callback", 3)
