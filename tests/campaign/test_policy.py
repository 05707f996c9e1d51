"""Calling windows and the retry policy, including the no-call-outside-windows property."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbot.campaign.policy import RetryPolicy, Windows
from callbot.exceptions import CampaignError


def test_default_windows_shanghai() -> None:
    w = Windows.parse("09:00-11:30,14:00-20:00")
    # 2026-01-05 01:00 UTC = 09:00 Shanghai
    assert w.is_open(datetime(2026, 1, 5, 1, 0))
    assert not w.is_open(datetime(2026, 1, 5, 0, 59))
    assert not w.is_open(datetime(2026, 1, 5, 3, 30))  # 11:30 local: end is exclusive
    assert w.next_open(datetime(2026, 1, 5, 3, 30)) == datetime(2026, 1, 5, 6, 0)  # 14:00
    assert w.next_open(datetime(2026, 1, 5, 12, 0)) == datetime(2026, 1, 6, 1, 0)  # tomorrow 9:00


@pytest.mark.parametrize("bad", ["", "9-10", "10:00-09:00", "25:00-26:00", "24:00-24:00"])
def test_bad_windows(bad: str) -> None:
    with pytest.raises(CampaignError):
        Windows.parse(bad)


_minute = st.integers(0, 24 * 60)


@st.composite
def windows(draw):  # type: ignore[no-untyped-def]
    spans = []
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(0, 24 * 60 - 1))
        b = draw(st.integers(a + 1, 24 * 60))
        spans.append((f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}"))
    return Windows(tuple(spans), draw(st.sampled_from(["Asia/Shanghai", "UTC", "America/New_York"])))


_clock = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31))


@settings(max_examples=300, deadline=None)
@given(windows(), _clock)
def test_property_is_open_matches_local_minutes(w: Windows, now: datetime) -> None:
    from datetime import UTC
    from zoneinfo import ZoneInfo

    loc = now.replace(tzinfo=UTC).astimezone(ZoneInfo(w.tz))
    m = loc.hour * 60 + loc.minute + loc.second / 60 + loc.microsecond / 6e7
    inside = False
    for a, b in w.spans:
        am = int(a[:2]) * 60 + int(a[3:])
        bm = int(b[:2]) * 60 + int(b[3:])
        inside |= am <= m < bm
    assert w.is_open(now) == inside


@settings(max_examples=300, deadline=None)
@given(windows(), _clock)
def test_property_next_open_is_open_and_earliest(w: Windows, now: datetime) -> None:
    nxt = w.next_open(now)
    assert nxt >= now and w.is_open(nxt)
    # nothing open in between (checked every minute, and just before nxt)
    t = now
    while t < nxt - timedelta(seconds=1):
        assert not w.is_open(t)
        t += timedelta(minutes=1)


def test_retry_policy_defaults() -> None:
    p = RetryPolicy.from_json(None)
    now = datetime(2026, 1, 1)
    assert p.decide("answered", True, 1, now) == ("completed", None)
    assert p.decide("no_answer", False, 1, now) == (None, now + timedelta(minutes=30))
    assert p.decide("busy", False, 2, now) == (None, now + timedelta(minutes=30))
    assert p.decide("busy", False, 3, now) == ("unreachable", None)
    assert p.decide("invalid_number", False, 1, now) == ("invalid_number", None)
    assert p.decide("interrupted", False, 1, now)[0] is None
    short = RetryPolicy.from_json({"delay_s": 2, "max_attempts": 5, "busy": {"max_attempts": 1}})
    assert short.decide("no_answer", False, 4, now) == (None, now + timedelta(seconds=2))
    assert short.decide("busy", False, 1, now) == ("unreachable", None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(windows(), _clock)
def test_property_no_call_starts_outside_windows(tmp_path_factory, w: Windows, now: datetime) -> None:  # type: ignore[no-untyped-def]
    """Through the real dispatcher and claim: with any windows and any clock, an attempt is
    enqueued and a call started only when the window is open."""
    from sqlalchemy import update

    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.jobs import begin_dialing
    from callbot.campaign.models import Attempt, Campaign
    from callbot.db import session_scope

    factory, redis, cid = _shared(tmp_path_factory)
    with session_scope(factory) as s:
        s.execute(update(Campaign).where(Campaign.id == cid)
                  .values(windows=w.as_list(), timezone=w.tz))
    d = Dispatcher(factory, redis, clock=lambda: now, queue_name="prop-windows")
    n, _ = d.dispatch_campaign(cid)
    assert (n > 0) == w.is_open(now)
    with session_scope(factory) as s:
        queued = s.scalars(select_queued(cid)).all()
    # the window may have closed by the time a worker takes the job: claim must refuse then
    later = now + timedelta(minutes=37)
    for aid in queued:
        job = begin_dialing(factory, aid, "prop", clock=lambda: later)
        assert (job is not None) == w.is_open(later)
    with session_scope(factory) as s:  # reset for the next example
        s.execute(update(Attempt).where(Attempt.campaign_id == cid, Attempt.state != "cancelled")
                  .values(state="cancelled"))
        from callbot.campaign.models import Target

        s.execute(update(Target).where(Target.campaign_id == cid)
                  .values(state="pending", next_at=None, attempts=0))
    redis.delete("rq:queue:prop-windows")


def select_queued(cid: int):  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from callbot.campaign.models import Attempt

    return select(Attempt.id).where(Attempt.campaign_id == cid, Attempt.state == "queued")


_SHARED: dict[str, object] = {}


def _shared(tmp_path_factory):  # type: ignore[no-untyped-def]
    if not _SHARED:
        from tests.campaign.conftest import make_env, numbers, setup_campaign

        env = make_env(tmp_path_factory.mktemp("prop"), None, None)
        factory = env.factory()
        cid = setup_campaign(factory, numbers(3), lines=2, policy={"delay_s": 0})
        with __import__("callbot.db", fromlist=["session_scope"]).session_scope(factory) as s:
            from callbot.campaign.models import Campaign

            s.get(Campaign, cid).daily_cap = 10**6
        _SHARED.update(factory=factory, redis=env.redis(), cid=cid)
    return _SHARED["factory"], _SHARED["redis"], _SHARED["cid"]
