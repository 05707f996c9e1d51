"""An overloaded trunk (503 Service Unavailable from the robot's SIP peer) uses up none of the
residents' tries: the attempt is given back, the line worker backs off, the campaign pauses with
the reason (线路繁忙) and resumes by itself, and every resident is then called on her one try.
Real parts: SIPp plays the trunk (the first two INVITEs get 503, later calls are answered), a
``callbot worker`` subprocess (pjsua2, TTS, the KWS model) and the dispatcher."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from callbot.campaign import service
from callbot.campaign.models import Attempt, Target
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running, wait_finished
from tests.campaign.population import sip_conf
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]

SIP = REPO / "tests" / "fixtures" / "sip"
NUMBERS = ["13900007001", "13900007002", "13900007003"]


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()
    for tool in ("sipp", "espeak-ng"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup installs it)")


def _trunk(tmp: Path, fails: int) -> tuple[subprocess.Popen[bytes], int]:
    """SIPp as the trunk: the first *fails* INVITEs get 503; it answers OPTIONS (-aa)."""
    text = (SIP / "uas_503_then_answer.xml").read_text().replace('value="FAILS"',
                                                                  f'value="{fails}"')
    (tmp / "trunk.xml").write_text(text)
    shutil.copy(SIP / "tone_ulaw.wav", tmp / "tone_ulaw.wav")
    port = free_port()
    p = subprocess.Popen(["sipp", "-sf", str(tmp / "trunk.xml"), "-i", "127.0.0.1", "-p", str(port),
                          "-mi", "127.0.0.1", "-mp", str(free_port()), "-nostdin", "-aa",
                          "-trace_err"], cwd=tmp, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    return p, port


@pytest.mark.timeout(300)
def test_a_503_from_the_trunk_uses_no_try(tmp_path: Path) -> None:
    trunk, port = _trunk(tmp_path, fails=2)
    try:
        env = make_env(tmp_path / "var", None, None,
                       CALLBOT_SIP_CONF=str(sip_conf(tmp_path / "sip.conf", port, 8.0)),
                       CALLBOT_TTS_ENGINE="espeak", CALLBOT_CALL_TTS_RATE="+40%")
        factory = env.factory()
        # one try each: a 503 counted as a try would end the resident unreachable at once
        cid = setup_campaign(factory, NUMBERS, lines=1, policy={"delay_s": 0, "max_attempts": 1})
        reasons: list[str] = []

        def watch() -> None:
            with session_scope(factory) as s:
                st = service.status(s, cid)
            if st.state == "paused" and st.pause_reason and st.pause_reason not in reasons:
                reasons.append(st.pause_reason)

        with running(env, lines=1, queue=f"trunk-{os.getpid()}"):
            assert wait_finished(factory, cid, 240, during=watch) == "finished"
    finally:
        trunk.terminate()
        trunk.wait(10)

    with session_scope(factory) as s:
        targets = s.scalars(select(Target).where(Target.campaign_id == cid)).all()
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)
                             .order_by(Attempt.id)).all()
        seen = [(a.contact_id, a.state, a.outcome, a.sip_code, a.error) for a in attempts]
        # the two 503s were given back, each saying why; they count for nobody (other cancelled
        # attempts were queued when the campaign paused: withdrawn, never dialled)
        given_back = [a for a in attempts if a.sip_code is None and a.state == "cancelled"
                      and "SIP 对端繁忙（503 Service Unavailable）" in (a.error or "")]
        assert len(given_back) == 2, seen
        assert all(a.state == "finished" or a.started_at is None for a in attempts
                   if a not in given_back), seen
        # every resident was then called on her one try, and answered
        for t in targets:
            mine = [a for a in attempts if a.target_id == t.id and a.state != "cancelled"]
            assert t.state == "done" and t.result != "unreachable", seen
            assert t.attempts == 1 and [a.outcome for a in mine] == ["answered"], seen
    # the worker backed off: the campaign paused with the trunk's reason, then went on by itself
    assert reasons and reasons[0].startswith(
        "线路繁忙，已自动暂停：SIP 对端繁忙（503 Service Unavailable）"), reasons
