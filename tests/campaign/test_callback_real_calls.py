"""'Call me back later' on real calls: a small welfare_check campaign whose line worker (pjsua2,
TTS, the KWS model, the dialogue) dials the resident simulator over SIP on 127.0.0.1; residents
answer with the synthesized 我现在没空 / 我在忙 clips. The busy residents are called back until
the attempts run out and end ``callback``; the answered calls count as answered, not completed.
Kept small (4 contacts) because every call is real."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter

import pytest
from sqlalchemy import select

from callbot import reports
from callbot.campaign.models import Attempt
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running, wait_finished
from tests.campaign.population import sip_conf
from tests.conftest import REPLIES, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]

# number: (persona replies, final result, attempts, welfare answer)
PEOPLE = {
    "13900005001": (["woxianzaimeikong.wav"], "callback", 3, None),
    "13900005002": (["wobushufu.wav"], "completed", 1, "needs_help"),
    "13900005003": (["wohenhao.wav", "wozaimang.wav"], "callback", 3, "ok"),
    "13900005004": (None, "unreachable", 3, None),  # never answers
}


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")


@pytest.mark.timeout(600)
def test_busy_residents_are_called_back_over_sip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from callbot.residents import Simulator, read_call_log

    lines = ["residents:"]
    for number, (said, *_rest) in PEOPLE.items():
        if said is None:
            lines.append(f'  - {{number: "{number}", behaviour: no_answer}}')
        else:
            refs = json.dumps([str(REPLIES / r) for r in said])
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
                             policy={"delay_s": 1, "max_attempts": 3, "callback": {"delay_s": 1},
                                     "interrupted": {"delay_s": 15}})
        with running(env, lines=4, queue=f"cb-{os.getpid()}"):
            assert wait_finished(factory, cid, 480) == "finished"
        time.sleep(1.0)  # the simulator logs a call when its side has ended
    finally:
        sim.stop()

    with session_scope(factory) as s:
        rows = {r["dial"]: r for r in reports.contact_rows(s, cid)}
        rep = reports.full_report(s, cid)
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)).all()
    infra = [a for a in attempts if a.outcome in ("interrupted", "failed", "unreachable")]
    for number, (_said, result, n, welfare) in PEOPLE.items():
        r = rows[number]
        mine = [(a.number, a.outcome, a.ended) for a in attempts if a.contact_id == r["contact_id"]]
        assert (r["state"], r["result"]) == ("done", result), (number, mine)
        if not infra:
            assert r["attempts"] == n, (number, mine)
        assert r["answers"].get("welfare") == welfare, (number, r["answers"])
    busy = [a for a in attempts if a.ended == "callback"]
    assert busy and all(a.outcome == "answered" and not a.completed for a in busy)
    # every answered call of the busy residents ended callback, understood at the first reply
    for number in ("13900005001", "13900005003"):
        cid_ = rows[number]["contact_id"]
        ends = {a.ended for a in attempts if a.contact_id == cid_ and a.outcome == "answered"}
        assert ends == {"callback"}, (number, ends)
        said = [t["text"] for a in attempts if a.contact_id == cid_ and a.transcript
                for t in a.transcript if t["role"] == "bot"]
        assert "好的，那我们晚点再打给您。再见。" in said

    answered = sum(1 for a in attempts if a.outcome == "answered")
    assert rep["answered_attempts"] == answered
    assert rep["reached_contacts"] == 3 and rep["completed_contacts"] == 1
    assert rep["completion_rate"] == 0.25
    assert rep["results"] == dict(Counter(v[1] for v in PEOPLE.values()))
    assert rep["callback_contacts"] == 2
    follow = [(d["phone"], d["reason"]) for d in rep["welfare"]["follow_up"]]
    # 5003 said 我很好 before 我在忙: fine, so not on the list
    assert follow == [("13900005002", "needs_help"), ("13900005001", "callback"),
                      ("13900005004", "unreachable")]
    heard = Counter(c["number"] for c in read_call_log(tmp_path / "rec"))
    dialled = Counter(a.phone.removeprefix("+86") for a in attempts
                      if a.state in ("finished", "interrupted"))
    for number, k in heard.items():
        assert k <= dialled[number], number
