"""Free replies on real calls (issue 9): a welfare_check campaign whose line worker (pjsua2, TTS,
the pinyin recogniser, the dialogue) dials the resident simulator over SIP on 127.0.0.1. The
residents answer the open question "您最近身体怎么样？" in their own words (tests/fixtures/audio/
free): one has fallen and cannot get up, one speaks slowly about her knee, one is fine, one wants
no more calls. Kept small (4 contacts) because every call is real."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from sqlalchemy import select

from callbot import reports
from callbot.campaign.models import Attempt, DoNotCall
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running, wait_finished
from tests.campaign.population import sip_conf
from tests.conftest import FIXTURES, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]

FREE = FIXTURES / "audio" / "free"
# number: (persona replies, final result, answers, end of the dialogue)
PEOPLE = {
    "13900006001": (["emg_shuaile.wav"], "completed",
                    {"urgent": True, "welfare": "needs_help", "note": "我摔了一跤站不起来"}, "completed"),
    "13900006002": (["help_xigai_slow.wav"], "completed",
                    {"welfare": "needs_help", "note": "膝盖疼得厉害"}, "completed"),
    "13900006003": (["ok_couhe.wav", "no_buyong.wav"], "completed", {"welfare": "ok"}, "completed"),
    "13900006004": (["stop_bielao.wav"], "dnc", {}, "stop"),
}


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")


@pytest.mark.timeout(600)
def test_a_fall_told_in_her_own_words_is_urgent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from callbot.residents import Simulator

    lines = ["residents:"]
    for number, (said, *_rest) in PEOPLE.items():
        refs = json.dumps([str(FREE / r) for r in said])
        lines.append(f'  - {{number: "{number}", behaviour: answer, replies: {refs}}}')
    (tmp_path / "personas.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    port = free_port()
    sim = Simulator(str(tmp_path / "personas.yaml"), str(tmp_path / "rec"), port=port, procs=2)
    sim.start()
    try:
        env = make_env(tmp_path / "var", None, None,
                       CALLBOT_SIP_CONF=str(sip_conf(tmp_path / "sip.conf", port)),
                       CALLBOT_TTS_ENGINE="espeak", CALLBOT_CALL_TTS_RATE="+40%")
        factory = env.factory()
        cid = setup_campaign(factory, list(PEOPLE), lines=4, script="welfare_check",
                             policy={"delay_s": 1, "max_attempts": 2,
                                     "interrupted": {"delay_s": 15}})
        with running(env, lines=4, queue=f"free-{os.getpid()}"):
            assert wait_finished(factory, cid, 300) == "finished"
        time.sleep(1.0)
    finally:
        sim.stop()

    with session_scope(factory) as s:
        rows = {r["dial"]: r for r in reports.contact_rows(s, cid)}
        rep = reports.full_report(s, cid)
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)).all()
        dnc = set(s.scalars(select(DoNotCall.phone)).all())
        header, table = reports.export_table(s, cid)
    for number, (_said, result, answers, ended) in PEOPLE.items():
        r = rows[number]
        mine = [a for a in attempts if a.contact_id == r["contact_id"]]
        assert (r["state"], r["result"]) == ("done", result), (number, [a.ended for a in mine])
        assert r["answers"] == answers, (number, r["answers"])
        assert [a.ended for a in mine] == [ended], number  # understood at once: called once
    # she said it in her own words, and the call heard it as an emergency
    fall = next(a for a in attempts if a.contact_id == rows["13900006001"]["contact_id"])
    assert fall.transcript is not None
    heard = [t for t in fall.transcript if t["role"] == "callee"]
    assert len(heard) == 1 and (heard[0]["intent"], heard[0]["urgent"]) == ("emergency", True)
    assert heard[0]["text"] == "我摔了一跤站不起来" and heard[0]["pinyin"].startswith("wǒ shuā")
    assert "马上通知网格员" in fall.transcript[-1]["text"]
    assert list(rows["13900006001"]["answers"])[0] == "urgent"  # shown first
    # the follow-up list: the urgent one first, then the knee; the fine one is not on it
    follow = [(d["phone"], d["reason"], d["urgent"]) for d in rep["welfare"]["follow_up"]]
    assert follow[:2] == [("13900006001", "emergency", True), ("13900006002", "needs_help", False)]
    assert rep["welfare"]["counts"]["urgent"] == 1 and rep["welfare"]["counts"]["needs_help"] == 2
    # the export names the urgent field first among the answers
    first_answer = header.index("状态") + 4
    assert header[first_answer] == "紧急"
    by_phone = {row[2]: row for row in table}
    assert by_phone["13900006001"][first_answer] == "是"
    # "别老打电话来": the number is on the do-not-call list, never dialled again
    assert any(p.endswith("13900006004") for p in dnc)
