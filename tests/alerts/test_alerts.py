"""Alerts on the fast layer: the real dialogue engine, jobs, SQL and the dispatcher's deliverer
against a local HTTP server standing in for the group robot (the real-SIP campaign is in
test_alerts_sip.py). What a committee checks: the message names the resident, where she lives,
what she said, the campaign and the urgency; a failed delivery is retried and shown; nothing is
sent twice; a restart picks up where the last process stopped."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from callbot import alerts, defaults
from callbot.alerts import Alert, Deliverer
from callbot.campaign.dispatcher import Dispatcher
from callbot.campaign.jobs import LineContext, run_attempt
from callbot.campaign.models import Answer, Attempt, Campaign, utcnow
from callbot.committees import CommitteeSettings
from callbot.db import session_scope
from callbot.dialogue import Alert as AlertAction
from callbot.dialogue import DialogueEngine, Heard, Record
from callbot.script import load_script
from tests.alerts.conftest import typed_runner
from tests.alerts.robot import GroupRobot
from tests.campaign.conftest import numbers, setup_campaign

HELP = "不太好，我腰疼得厉害"


def _run_all(env, factory, runner, queue: str = "alerts-q") -> None:  # type: ignore[no-untyped-def]
    """Dispatch and run every attempt in this process until the campaigns are over."""
    d = Dispatcher(factory, env.redis(), queue_name=queue, settings=env.settings)
    ctx = LineContext(factory=factory, runner=runner, worker_id="t")
    for _ in range(20):
        d.tick()
        with session_scope(factory) as s:
            queued = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).all()
            running = s.scalar(select(func.count()).select_from(Campaign)
                               .where(Campaign.state == "running"))
        for aid in queued:
            run_attempt(ctx, aid)
        env.redis().delete(f"rq:queue:{queue}")
        if not queued and not running:
            return
    raise AssertionError("campaign did not finish")


def _alerts(factory) -> list[Alert]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        rows = s.scalars(select(Alert).order_by(Alert.id)).all()
        for a in rows:
            s.expunge(a)
    return list(rows)


def test_engine_raises_a_needs_help_alert_beside_the_answer() -> None:
    engine = DialogueEngine(load_script("welfare_check"), {"姓名": "王奶奶"})
    engine.start()
    acts = engine.on(Heard(HELP))
    kinds = [type(a).__name__ for a in acts]
    assert "Alert" in kinds
    alert = next(a for a in acts if isinstance(a, AlertAction))
    # right after the Records of the same reply: the call stores them in one transaction
    assert kinds.index("Alert") == max(i for i, a in enumerate(acts) if isinstance(a, Record)) + 1
    assert (alert.reason, alert.said) == ("needs_help", HELP)
    fine = DialogueEngine(load_script("welfare_check"), {"姓名": "李大爷"})
    fine.start()
    assert not any(isinstance(a, AlertAction) for a in fine.on(Heard("挺好的")) + fine.on(Heard("不需要")))
    assert fine.alerts == []


def test_alert_is_written_with_the_answer_or_not_at_all(env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(1)
    setup_campaign(factory, nums, script="welfare_check", name="关爱一月")

    real = alerts.raise_alert

    def broken(*a, **kw):  # type: ignore[no-untyped-def]
        if kw["reason"] == "needs_help":
            raise RuntimeError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(alerts, "raise_alert", broken)
    _run_all(env, factory, typed_runner({nums[0]: [HELP]}))
    with session_scope(factory) as s:  # the answer's transaction failed with the alert's
        assert s.scalar(select(func.count()).select_from(Answer)) == 0
        assert set(s.scalars(select(Attempt.outcome))) == {"failed"}
        # a crashed call is no answer: after every attempt she is on the list as unreachable
        assert s.scalars(select(Alert.reason)).all() == ["unreachable"]


def test_needs_help_and_unreachable_alert_and_are_delivered(env, robot: GroupRobot) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(4)
    cid = setup_campaign(factory, nums, script="welfare_check", name="关爱一月")
    plan = {nums[0]: [HELP], nums[1]: ["挺好的", "不需要"], nums[2]: "no_answer",
            nums[3]: ["#2"]}
    _run_all(env, factory, typed_runner(plan))
    got = _alerts(factory)
    by_reason = sorted((a.reason, a.contact_id) for a in got)
    assert [r for r, _ in by_reason] == ["needs_help", "needs_help", "unreachable"]
    help_alert = next(a for a in got if a.reason == "needs_help" and a.said == HELP)
    assert not help_alert.urgent and help_alert.state == "open"
    assert help_alert.delivery == "pending"  # nothing sent before the deliverer runs
    unreachable = next(a for a in got if a.reason == "unreachable")
    assert "拨打 3 次" in unreachable.detail and "无人接听" in unreachable.detail

    stats = Deliverer(factory, env.settings).run_once()
    assert stats.delivered == 3 and robot.refused == 0
    body = robot.received[0]["body"]
    assert set(body) == {"msgtype", "text"} and body["msgtype"] == "text"
    first = next(c for c in robot.contents() if HELP in c)
    assert "居民0" in first and "1号楼100室" in first  # name, building/room (the list's 地址)
    assert "138****0000" in first and "13800000000" not in first  # masked by default
    assert "关爱一月" in first and "【提醒】需要帮助" in first
    assert f"#{help_alert.id}" in first
    assert f"http://callbot.example:8000/campaigns/{cid}/contacts/{help_alert.contact_id}" in first
    assert "按键2" in next(c for c in robot.contents() if "居民3" in c)
    assert any("联系不上" in c and "居民2" in c for c in robot.contents())
    assert Deliverer(factory, env.settings).run_once().delivered == 0  # sent once
    assert len(robot.received) == 3
    for a in _alerts(factory):
        assert a.delivery == "delivered" and a.tries == 1 and a.content and a.delivered_at
        assert "test-key-1234" not in a.destination  # the key is a secret


def test_mask_campaign_unreachable_raises_nothing(env) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(2)
    setup_campaign(factory, nums, script="mask_reservation")
    _run_all(env, factory, typed_runner({nums[0]: "no_answer", nums[1]: ["需要", "两盒", "对"]}))
    assert _alerts(factory) == []


def _one_alert(env, **kw):  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(1)
    cid = setup_campaign(factory, nums, script="welfare_check", name="关爱二月", **kw)
    with session_scope(factory) as s:
        from callbot.campaign.models import Contact

        contact = s.scalar(select(Contact))
        a = alerts.raise_alert(s, campaign_id=cid, contact_id=contact.id, reason="needs_help",
                               urgent=True, said="我摔倒了，站不起来")
        aid = a.id
    return factory, aid


@pytest.mark.parametrize("mode", ["5xx", "errcode", "down"])
def test_failed_delivery_is_retried_with_backoff_and_shown(env, robot: GroupRobot, mode) -> None:  # type: ignore[no-untyped-def]
    factory, aid = _one_alert(env)
    if mode == "down":
        robot.stop()
    else:
        robot.mode = mode
    now = [utcnow()]
    d = Deliverer(factory, env.settings, clock=lambda: now[0])
    for tries in (1, 2, 3):
        stats = d.run_once()
        assert stats.failed == 1, stats
        with session_scope(factory) as s:
            a = s.get(Alert, aid)
            assert (a.delivery, a.tries) == ("retrying", tries)
            assert a.next_try_at is not None and a.last_error is not None
            wait = (a.next_try_at - now[0]).total_seconds()
            assert wait == pytest.approx(min(defaults.ALERT_RETRY_MAX_S, 2.0 * 2 ** (tries - 1)))
            expect = {"5xx": "HTTP 502", "errcode": "errcode 45009", "down": "连接失败"}[mode]
            assert expect in a.last_error
        assert d.run_once().failed == 0  # not before its time
        now[0] += timedelta(seconds=wait)
    if mode == "down":
        robot.start()
    robot.mode = "ok"
    assert d.run_once().delivered == 1
    assert len(robot.received) == 1 and "【紧急】需要帮助" in robot.contents()[0]
    with session_scope(factory) as s:
        a = s.get(Alert, aid)
        assert (a.delivery, a.tries, a.next_try_at) == ("delivered", 4, None)


def test_a_restart_resumes_and_a_dead_senders_row_is_sent_again(env, robot: GroupRobot) -> None:  # type: ignore[no-untyped-def]
    factory, aid = _one_alert(env)
    with session_scope(factory) as s:  # a deliverer that died mid-POST a while ago
        a = s.get(Alert, aid)
        a.delivery, a.sending_since = "sending", utcnow() - timedelta(seconds=120)
    fresh = Deliverer(env.factory(), env.settings)  # a new process on the same database
    assert fresh.run_once().delivered == 1
    assert len(robot.received) == 1


def test_two_deliverers_send_each_alert_once(env, robot: GroupRobot) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(12)
    cid = setup_campaign(factory, nums, script="welfare_check")
    with session_scope(factory) as s:
        from callbot.campaign.models import Contact

        for ct in s.scalars(select(Contact)):
            alerts.raise_alert(s, campaign_id=cid, contact_id=ct.id, reason="needs_help")
    threads = [threading.Thread(target=Deliverer(env.factory(), env.settings).run_once)
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = sorted(int(c.rsplit("#", 1)[1].split()[0]) for c in robot.contents())
    assert ids == sorted(set(ids)) and len(ids) == 12


def test_committee_webhook_and_full_phone_override_the_environment(env) -> None:  # type: ignore[no-untyped-def]
    from callbot.accounts import Ownership

    factory, aid = _one_alert(env)
    with GroupRobot() as own:
        with session_scope(factory) as s:
            a = s.get(Alert, aid)
            s.add(Ownership(kind="campaign", object_id=str(a.campaign_id), committee="东风居委会",
                            created_by="staff_a"))
            s.add(CommitteeSettings(name="东风居委会", webhook_url=own.url, full_phone=True))
            a.committee = "东风居委会"
        assert Deliverer(factory, env.settings).run_once().delivered == 1
        text = own.wait_for(1)[0]
        assert "13800000000" in text and "东风居委会" in text


def test_no_webhook_keeps_the_alert_on_the_page_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.campaign.conftest import make_env

    env = make_env(tmp_path / "var2", None, None)
    factory, aid = _one_alert(env)
    assert Deliverer(factory, env.settings).run_once().unconfigured == 1
    with session_scope(factory) as s:
        assert s.get(Alert, aid).delivery == "none"


def test_dispatcher_delivers_within_its_loop(env, robot: GroupRobot) -> None:  # type: ignore[no-untyped-def]
    """No extra daemon: the dispatcher process delivers while it runs (and waits for a first try
    before it stops when idle)."""
    factory, aid = _one_alert(env)
    d = Dispatcher(factory, env.redis(), queue_name="alerts-loop", settings=env.settings)
    stop = threading.Event()
    t0 = time.time()
    t = threading.Thread(target=d.run, args=(stop, 0.2), daemon=True)
    t.start()
    try:
        robot.wait_for(1, timeout=10)
    finally:
        stop.set()
        t.join(10)
    assert robot.received[0]["at"] - t0 < 5
    with session_scope(factory) as s:
        assert s.get(Alert, aid).delivery == "delivered"


def test_post_body_is_the_text_message_both_robots_take(robot: GroupRobot) -> None:
    alerts.post_webhook(robot.url, "测试：张阿姨需要帮助")
    assert robot.received[0]["body"] == {"msgtype": "text", "text": {"content": "测试：张阿姨需要帮助"}}
    assert json.dumps(robot.received[0]["body"], ensure_ascii=False)
