"""The group robot down during a campaign (lean version; bench/alerts.py runs the 60 s outage on
real calls): every alert raised meanwhile arrives after it comes back, none twice. Real line-worker
processes and the dispatcher; the calls are typed into the real dialogue engine."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from callbot.alerts import Alert
from callbot.db import session_scope
from tests.alerts.robot import GroupRobot
from tests.campaign.conftest import numbers, setup_campaign
from tests.campaign.harness import running, wait_finished

pytestmark = [pytest.mark.slow]
RUNNER = "tests.alerts.runners:welfare_runner"


def test_robot_down_mid_campaign_every_alert_arrives_once(env, robot: GroupRobot) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(24)
    cid = setup_campaign(factory, nums, script="welfare_check", lines=4, name="关爱停机")
    expected = {f"居民{i}" for i, n in enumerate(nums) if int(n[-1]) % 2}
    with running(env, lines=4, runner=RUNNER, queue="alerts-outage", interval=0.2):
        robot.wait_for(1, timeout=60)  # the campaign is under way and alerts flow
        robot.stop()
        down_at = time.monotonic()
        time.sleep(8)
        with session_scope(factory) as s:
            waiting = s.scalars(select(Alert).where(Alert.delivery == "retrying")).all()
            assert waiting and all("连接失败" in (a.last_error or "") for a in waiting)
        robot.start()
        back = time.time()
        wait_finished(factory, cid, 120)
        robot.wait_for(len(expected), timeout=60)
        time.sleep(3)  # nothing more may come
    assert time.monotonic() - down_at >= 8
    contents = robot.contents()
    names = [c.split("居民：", 1)[1].split("　", 1)[0] for c in contents]
    assert sorted(names) == sorted(expected)  # every one, none twice
    late = [m for m in robot.received if m["at"] >= back]
    assert late, "some alerts were held back by the outage"
    with session_scope(factory) as s:
        rows = s.scalars(select(Alert)).all()
        assert {a.delivery for a in rows} == {"delivered"}
        assert any(a.tries > 1 for a in rows)
