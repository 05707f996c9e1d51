"""Fast layer beside tests/campaign/test_trunk_failure_real_calls.py: a line worker's back-off
after trunk-side failures (503 and the like), a probe that left while the peer was away does
not take the line down again once a later probe was answered (SIPp as the peer), and the
dispatcher does not pause again right after the peer returns (SQLite + embedded Redis)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from callbot import defaults
from callbot.campaign import service
from callbot.campaign.dispatcher import Dispatcher
from callbot.campaign.jobs import begin_dialing
from callbot.campaign.line import LineHealth
from callbot.campaign.models import Attempt, LineWorker, utcnow
from callbot.config import SipConfig
from callbot.db import session_scope
from callbot.telephony.outcome import trunk_failure
from tests.campaign.conftest import make_env, numbers, setup_campaign
from tests.conftest import REPO, free_port

NOW = datetime(2026, 3, 2, 2, 0)


def test_trunk_failures_are_the_line_not_the_resident() -> None:
    for code in (503, 500, 502, 504, 408):
        assert trunk_failure(code)
    assert not trunk_failure(503, announcement="您拨打的电话暂时无法接通")  # the carrier said so
    assert not trunk_failure(503, answered=True)
    assert not trunk_failure(None)
    for other in (404, 480, 486, 487, 603):
        assert not trunk_failure(other)


def test_a_503_backs_the_worker_off_and_gives_the_call_back(tmp_path: Path) -> None:
    # a peer that answers OPTIONS: the back-off, not the probe, keeps the line down
    line = LineHealth(None)
    why = line.never_reached("unreachable", 503, None, "13800000001")
    assert why is not None and why.startswith("SIP 对端繁忙（503 Service Unavailable）")
    assert line.down and line.reason == why
    assert f"{defaults.LINE_BUSY_BACKOFF_S:g} 秒内不再外呼" in why
    # a second failure of a call placed at the same time does not lengthen it
    assert line.never_reached("failed", 502, None, "13800000002") == why
    # an announcement (无法接通 then 503) is the resident's network: it counts
    assert line.never_reached("unreachable", 503, "您拨打的电话暂时无法接通", "13800000003") is None
    # one number the trunk always fails is given back TRUNK_GIVE_BACKS_MAX times, then counts
    for _ in range(defaults.TRUNK_GIVE_BACKS_MAX - 1):
        assert line.never_reached("unreachable", 503, None, "13800000001") is not None
    assert line.never_reached("unreachable", 503, None, "13800000001") is None


def _sipp_options_peer(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    shutil.copy(REPO / "tests" / "fixtures" / "sip" / "uas_no_answer.xml", tmp / "s.xml")
    return subprocess.Popen(["sipp", "-sf", str(tmp / "s.xml"), "-i", "127.0.0.1", "-p", str(port),
                             "-mi", "127.0.0.1", "-mp", str(free_port()), "-nostdin", "-aa"],
                            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_probe_sent_while_the_peer_was_away_does_not_take_the_line_down(tmp_path: Path) -> None:
    """Line threads probe too (a call got no answer): one that left while the peer was away
    and timed out after another probe was answered marked the line down again — campaigns
    paused for a moment right after the peer returned."""
    if shutil.which("sipp") is None:
        pytest.skip("sipp is not installed (scripts/setup installs it)")
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the peer is away: drops all
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    line = LineHealth(SipConfig(dial_uri=f"sip:{{number}}@127.0.0.1:{port}"))
    stale: list[bool] = []
    t = threading.Thread(target=lambda: stale.append(line.check()))
    t.start()
    time.sleep(0.3)  # its OPTIONS is lost
    sink.close()
    sipp = _sipp_options_peer(tmp_path, port)  # the peer is back on the same port
    try:
        deadline = time.monotonic() + 10
        while not line.check():
            assert time.monotonic() < deadline, line.reason
            time.sleep(0.1)
        t.join(10)
        assert stale == [True]
        assert not line.down, line.reason
    finally:
        sipp.terminate()
        sipp.wait(5)


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    return make_env(tmp_path / "var", None, None)


def test_no_second_pause_right_after_the_peer_returns(env) -> None:  # type: ignore[no-untyped-def]
    """Two line workers found the peer away: paused. The first to probe it again fills its
    lines at once while the other has yet to probe: that is no reason to pause again (it was).
    A later outage, found after that worker came back, still pauses."""
    factory = env.factory()
    cid = setup_campaign(factory, numbers(6), lines=2)
    d = Dispatcher(factory, env.redis(), clock=lambda: NOW, queue_name="inproc-busy",
                   dead_after_s=5)
    with session_scope(factory) as s:
        for wid in ("a", "b"):
            s.add(LineWorker(id=wid, host="h", pid=1, lines=2, heartbeat_at=utcnow(),
                             line_down_since=utcnow(), line_down_reason="SIP 对端无响应"))
    assert d.check_lines() == [(cid, "paused")]
    with session_scope(factory) as s:
        s.get(LineWorker, "a").line_down_since = None
    assert d.check_lines() == [(cid, "resumed")]
    d.tick()
    with session_scope(factory) as s:
        ids = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).all()
    assert len(ids) == 2
    for aid in ids:  # worker a takes both lines' calls
        assert begin_dialing(factory, aid, "a", clock=lambda: NOW) is not None
    assert d.check_lines() == []  # b has not probed yet: a's calls say the line is up
    with session_scope(factory) as s:
        assert service.status(s, cid).state == "running"
    time.sleep(0.01)
    with session_scope(factory) as s:  # the peer goes away again; b finds it, a is busy
        s.get(LineWorker, "b").line_down_since = utcnow()
    assert d.check_lines() == [(cid, "paused")]
