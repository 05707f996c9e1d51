"""What the resident decided is stored when it is heard, not at hang-up (fast layer, in-process
dispatcher and jobs on SQLite + embedded Redis). The real-call version, a line worker SIGKILLed
while the goodbye plays, is tests/campaign/test_end_heard_real_calls.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from callbot.campaign.dispatcher import Dispatcher
from callbot.campaign.jobs import CallOutcome, begin_dialing, finish, record_end
from callbot.campaign.models import Answer, Attempt, DoNotCall, LineWorker, Target, utcnow
from callbot.db import session_scope
from tests.campaign.conftest import make_env, numbers, setup_campaign

NOW = datetime(2026, 3, 2, 2, 0)  # 10:00 in Shanghai
QUEUE = "inproc-end"


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    return make_env(tmp_path / "var", None, None)


def _dispatcher(env, clock: datetime = NOW) -> Dispatcher:  # type: ignore[no-untyped-def]
    return Dispatcher(env.factory(), env.redis(), clock=lambda: clock, queue_name=QUEUE,
                      dead_after_s=5)


def _dialing(env, policy: dict | None = None) -> tuple[int, int]:  # type: ignore[no-untyped-def,type-arg]
    """One contact, its first attempt claimed by worker ``w`` (heartbeat fresh): (campaign, attempt)."""
    factory = env.factory()
    cid = setup_campaign(factory, numbers(1), lines=1,
                         policy=policy or {"delay_s": 0, "max_attempts": 3})
    _dispatcher(env).tick()
    env.redis().delete(f"rq:queue:{QUEUE}")
    with session_scope(factory) as s:
        s.add(LineWorker(id="w", host="h", pid=1, lines=1, heartbeat_at=utcnow()))
        aid = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).one()
    assert begin_dialing(factory, aid, "w", clock=lambda: NOW) is not None
    return cid, aid


def _worker_dies(env) -> int:  # type: ignore[no-untyped-def]
    """The line worker stops heart-beating (SIGKILL); one reconciler pass."""
    with session_scope(env.factory()) as s:
        s.get(LineWorker, "w").heartbeat_at = utcnow() - timedelta(minutes=5)
    return _dispatcher(env).reconcile_dead_workers()


def _state(env, aid: int) -> tuple[Attempt, Target]:  # type: ignore[no-untyped-def]
    with session_scope(env.factory()) as s:
        a = s.get(Attempt, aid)
        t = s.get(Target, a.target_id)
        s.expunge_all()
    assert a is not None and t is not None
    return a, t


def _placed(env) -> int:  # type: ignore[no-untyped-def]
    with session_scope(env.factory()) as s:
        return len(s.scalars(select(Attempt.id).where(Attempt.state != "cancelled")).all())


def test_completed_end_stored_before_hangup_survives_a_killed_worker(env) -> None:  # type: ignore[no-untyped-def]
    _, aid = _dialing(env)
    record_end(env.factory(), aid, "completed", clock=lambda: NOW)
    a, t = _state(env, aid)
    assert (a.state, a.completed, a.ended) == ("dialing", True, "completed")  # call still up
    assert _worker_dies(env) == 1
    a, t = _state(env, aid)
    assert (a.state, a.outcome, a.completed) == ("interrupted", "answered", True)
    assert (t.state, t.result) == ("done", "completed")
    for later in (NOW, NOW + timedelta(hours=3)):  # never dialled again
        _dispatcher(env, later).tick()
    assert _placed(env) == 1


def test_stop_puts_the_number_on_do_not_call_when_heard(env) -> None:  # type: ignore[no-untyped-def]
    _, aid = _dialing(env)
    record_end(env.factory(), aid, "stop", clock=lambda: NOW)
    with session_scope(env.factory()) as s:
        phone = s.get(Attempt, aid).phone
        assert s.scalar(select(DoNotCall.phone).where(DoNotCall.phone == phone)) == phone
    _worker_dies(env)
    a, t = _state(env, aid)
    assert (a.outcome, a.ended, a.completed) == ("answered", "stop", False)
    assert (t.state, t.result) == ("done", "dnc")
    _dispatcher(env, NOW + timedelta(hours=3)).tick()
    assert _placed(env) == 1


def test_callback_request_heard_is_retried_by_its_own_rule(env) -> None:  # type: ignore[no-untyped-def]
    _, aid = _dialing(env, {"delay_s": 0, "max_attempts": 3, "callback": {"delay_s": 3600}})
    record_end(env.factory(), aid, "callback", clock=lambda: NOW)
    _worker_dies(env)
    a, t = _state(env, aid)
    assert (a.outcome, a.ended) == ("answered", "callback")
    assert t.state == "pending" and t.next_at == NOW + timedelta(hours=1)
    _dispatcher(env, NOW + timedelta(minutes=30)).tick()  # not called straight back
    assert _placed(env) == 1
    _dispatcher(env, NOW + timedelta(hours=1)).tick()
    assert _placed(env) == 2


def test_slow_worker_end_heard_after_reconcile_withdraws_the_retry_and_late_finish_keeps_talk(env) -> None:  # type: ignore[no-untyped-def]
    """The reconciler took a slow worker for dead (attempt interrupted, retry queued); then the
    dialogue reached its end: the contact is completed, the queued retry withdrawn, and the late
    hang-up still stores talk time and transcript."""
    _, aid = _dialing(env)
    _worker_dies(env)
    _dispatcher(env).tick()  # the interrupted rule (delay 0) queues a retry
    env.redis().delete(f"rq:queue:{QUEUE}")
    with session_scope(env.factory()) as s:
        retry = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).one()
        s.add(Answer(attempt_id=aid, campaign_id=1, contact_id=1, field="masks", value=2))
    record_end(env.factory(), aid, "completed", clock=lambda: NOW)
    a, t = _state(env, aid)
    assert (a.state, a.outcome, a.completed) == ("interrupted", "answered", True)
    assert (t.state, t.result) == ("done", "completed")
    r, _ = _state(env, retry)
    assert r.state == "cancelled"
    finish(env.factory(), aid, CallOutcome(outcome="answered", completed=True, sip_code=200,
                                           talk_s=17.5, ended="completed",
                                           transcript=[{"role": "bot", "text": "再见"}]),
           clock=lambda: NOW)
    a, t = _state(env, aid)
    assert (a.talk_seconds, a.sip_code, a.completed) == (17.5, 200, True)
    assert a.transcript == [{"role": "bot", "text": "再见"}]
    assert (t.state, t.result) == ("done", "completed")
    assert _placed(env) == 1


def test_finish_keeps_the_end_heard_whatever_hangup_reports(env) -> None:  # type: ignore[no-untyped-def]
    """A call whose dialogue completed and then dropped during the goodbye stays completed."""
    _, aid = _dialing(env)
    record_end(env.factory(), aid, "completed", clock=lambda: NOW)
    finish(env.factory(), aid, CallOutcome(outcome="answered", completed=False, sip_code=200,
                                           talk_s=9.0, ended=None), clock=lambda: NOW)
    a, t = _state(env, aid)
    assert (a.state, a.completed, a.ended) == ("finished", True, "completed")
    assert (t.state, t.result) == ("done", "completed")
