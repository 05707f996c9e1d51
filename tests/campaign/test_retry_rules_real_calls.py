"""A campaign-wide retry delay (``--retry-delay``, the web form's 重拨间隔) does not replace the rules
whose wait is their meaning: a phone switched off (关机), a voice assistant (语音助手) and a resident
who asked to be called back (现在没空) are called again after their own two hours, while a no answer
in the same campaign is retried after the campaign's 1 s. Real calls: the line worker (pjsua2, TTS,
the KWS model, the dialogue) dials the resident simulator over SIP, which plays the shipped carrier
announcement / assistant greeting or the 我现在没空 clip."""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from callbot.campaign.models import Attempt, Contact, Target
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running
from tests.campaign.population import sip_conf
from tests.conftest import REPLIES, REPO, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]

ANN = REPO / "callbot" / "data" / "announcements"
# number: (persona, the outcome its first call must have)
PEOPLE: dict[str, tuple[dict[str, object], str]] = {
    "13900006001": ({"behaviour": "early_media_fail", "code": 480,
                     "announcement": str(ANN / "off_yonghu.wav")}, "powered_off"),
    "13900006002": ({"behaviour": "answered_announcement", "hangup_after_s": 3,
                     "announcement": str(ANN / "asst_mishu.wav")}, "assistant"),
    "13900006003": ({"behaviour": "answer",
                     "replies": [str(REPLIES / "woxianzaimeikong.wav")]}, "answered"),
    "13900006004": ({"behaviour": "no_answer"}, "no_answer"),
}


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")


def _rows(factory) -> dict[str, tuple[Target, list[Attempt]]]:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        out = {}
        for c, t in s.execute(select(Contact, Target).join(Target, Target.contact_id == Contact.id)):
            atts = s.scalars(select(Attempt).where(Attempt.target_id == t.id)
                             .order_by(Attempt.number)).all()
            s.expunge_all()
            out[c.dial] = (t, list(atts))
        return out


@pytest.mark.timeout(300)
def test_a_campaign_retry_delay_leaves_the_two_hour_rules(tmp_path: Path) -> None:
    from callbot.residents import Simulator

    rows = [{"number": n, **persona} for n, (persona, _) in PEOPLE.items()]
    (tmp_path / "personas.yaml").write_text(json.dumps({"residents": rows}, ensure_ascii=False),
                                            encoding="utf-8")
    port = free_port()
    sim = Simulator(str(tmp_path / "personas.yaml"), str(tmp_path / "rec"), port=port, procs=2)
    sim.start()
    try:
        env = make_env(tmp_path / "var", None, None,
                       CALLBOT_SIP_CONF=str(sip_conf(tmp_path / "sip.conf", port, 8.0)),
                       CALLBOT_TTS_ENGINE="espeak", CALLBOT_CALL_TTS_RATE="+40%")
        factory = env.factory()
        setup_campaign(factory, list(PEOPLE), lines=4, script="welfare_check",
                       policy={"delay_s": 1, "max_attempts": 3,
                               "interrupted": {"delay_s": 15}})
        with running(env, lines=4, queue=f"rr-{os.getpid()}"):
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                got = _rows(factory)
                if got["13900006004"][0].state == "done" and all(
                        any(a.state == "finished" for a in got[n][1]) for n in PEOPLE):
                    break
                time.sleep(0.5)
            else:
                raise AssertionError({n: (t.state, [(a.state, a.outcome) for a in atts])
                                      for n, (t, atts) in _rows(factory).items()})
            time.sleep(3)  # a retry after the campaign's 1 s would have been placed by now
            got = _rows(factory)
    finally:
        sim.stop()

    seen = {n: [(a.outcome, a.ended) for a in atts] for n, (_t, atts) in got.items()}
    # the contrast: no answer follows the campaign's 1 s, three tries, then unreachable
    t, atts = got["13900006004"]
    assert (t.state, t.result, t.attempts) == ("done", "unreachable", 3), seen
    for n in ("13900006001", "13900006002", "13900006003"):
        t, atts = got[n]
        first = atts[0]
        assert first.outcome == PEOPLE[n][1], seen
        if n == "13900006003":
            assert first.ended == "callback", seen
        # called once, due again two hours after that call ended (not after 1 s)
        assert (t.state, t.attempts, len(atts)) == ("pending", 1, 1), seen
        assert first.ended_at is not None and t.next_at is not None
        assert abs(t.next_at - (first.ended_at + timedelta(hours=2))) < timedelta(seconds=5), (
            n, t.next_at, first.ended_at)
