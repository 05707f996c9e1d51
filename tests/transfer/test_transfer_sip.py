"""转人工 over real SIP: a campaign's line worker (``callbot worker``) calls the resident
simulator; the resident asks for a person; the robot dials the committee's duty phone (another
persona of the simulator, who picks up and speaks) from the same process and bridges the two.
Both recordings prove the audio went both ways. An unanswered duty phone gives the call-back line
and an urgent alert on the group robot. The line stays busy for the whole bridged call."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from callbot import reports
from callbot.alerts import Alert
from callbot.campaign.models import Attempt
from callbot.committees import CommitteeSettings
from callbot.db import session_scope
from callbot.residents import read_call_log
from callbot.telephony.audio import contains, read_wav
from tests.alerts.robot import GroupRobot
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running, wait_finished
from tests.campaign.population import sip_conf
from tests.conftest import REPLIES, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]
SCRIPT = str(Path(__file__).with_name("ask_transfer.yaml"))
RESIDENT, CALM, LATE = "13800000001", "13800000002", "13800000003"
DUTY, DEAF = "88880001", "88880002"


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()


def _personas(path: Path) -> Path:
    ask = str(REPLIES / "shide.wav")
    rows = [
        # asks for a person; says nothing to "请稍等"; speaks to whoever picks up
        {"number": RESIDENT, "name": "陈奶奶", "replies": [ask, "silence",
                                                         str(REPLIES / "wobushufu.wav")]},
        {"number": CALM, "name": "李大爷", "replies": [str(REPLIES / "buyongle.wav")],
         "after_replies": "hangup"},
        {"number": LATE, "name": "王阿姨", "replies": [ask]},
        # the duty phone: rings 1 s, says hello, answers what it hears, then hangs up
        {"number": DUTY, "name": "值班室", "ring_s": 1, "greeting": str(REPLIES / "haode.wav"),
         "replies": [str(REPLIES / "zaijian.wav")], "after_replies": "hangup"},
        {"number": DEAF, "name": "没人接的值班电话", "behaviour": "no_answer"},
    ]
    path.write_text(yaml.safe_dump({"residents": rows}, allow_unicode=True), "utf-8")
    return path


def _duty(factory, number: str, timeout: float) -> None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:  # the installation's committee (CLI campaigns)
        row = s.scalar(select(CommitteeSettings).where(CommitteeSettings.name == "社区居委会"))
        if row is None:
            row = CommitteeSettings(name="社区居委会", full_phone=False, updated_by="test")
            s.add(row)
        row.duty_number, row.transfer_timeout_s = number, timeout


def test_transfer_bridges_and_falls_back(tmp_path: Path) -> None:
    from callbot.residents import Simulator

    port = free_port()
    sim = Simulator(str(_personas(tmp_path / "personas.yaml")), str(tmp_path / "rec"), port=port,
                    procs=2)
    sim.start()
    try:
        with GroupRobot() as robot:
            env = make_env(tmp_path / "var", None, None,
                           CALLBOT_SIP_CONF=str(sip_conf(tmp_path / "sip.conf", port, 6.0)),
                           CALLBOT_TTS_ENGINE="espeak", CALLBOT_CALL_TTS_RATE="+40%",
                           CALLBOT_ALERT_WEBHOOK=robot.url)
            factory = env.factory()
            _duty(factory, DUTY, 15)
            # one line: the calm resident is dialled only once the bridged call is over
            first = setup_campaign(factory, [RESIDENT, CALM], lines=1, script=SCRIPT,
                                   name="转人工一", policy={"delay_s": 0, "max_attempts": 1})
            with running(env, lines=1, queue=f"xfer-{os.getpid()}", interval=0.2):
                assert wait_finished(factory, first, 180) == "finished"
                _duty(factory, DEAF, 4)
                second = setup_campaign(factory, [LATE], lines=1, script=SCRIPT, name="转人工二",
                                        policy={"delay_s": 0, "max_attempts": 1})
                assert wait_finished(factory, second, 120) == "finished"
                robot.wait_for(1, timeout=20)
            time.sleep(1.0)  # the simulator logs a call once its side has ended
            _check(factory, first, second, tmp_path / "rec", robot, env.settings)
    finally:
        sim.stop()


def _check(factory, first: int, second: int, rec: Path, robot: GroupRobot, settings) -> None:  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        att = {a.phone.removeprefix("+86"): a for a in s.scalars(select(Attempt))}
        for a in att.values():
            s.expunge(a)
        raised = s.scalars(select(Alert)).all()
        rep = reports.summary(s, first)
        rep2 = reports.summary(s, second)
    bridged, calm, late = att[RESIDENT], att[CALM], att[LATE]
    assert (bridged.outcome, bridged.ended, bridged.completed) == ("answered", "transfer", True)
    assert (bridged.transfer_to, bridged.transfer_answered) == (DUTY, True)
    assert bridged.transfer_talk_s and bridged.transfer_talk_s > 2.0
    # the line was busy for the whole bridged call: the next contact only after it ended
    assert calm.started_at is not None and bridged.ended_at is not None
    assert calm.started_at >= bridged.ended_at
    assert rep["transfers"] == 1 and rep["transfers_answered"] == 1

    log = read_call_log(rec, wait_for=[RESIDENT, DUTY, LATE])
    resident = next(c for c in log if c["number"] == RESIDENT)
    duty = next(c for c in log if c["number"] == DUTY)
    heard_by_resident = read_wav(resident["recording"])
    heard_by_duty = read_wav(duty["recording"])
    for clip in ("haode.wav", "zaijian.wav"):  # the duty phone's voice reached the resident
        found, _, corr = contains(heard_by_resident, read_wav(REPLIES / clip))
        assert found, (clip, corr)
    found, _, corr = contains(heard_by_duty, read_wav(REPLIES / "wobushufu.wav"))
    assert found, corr  # and hers reached the duty phone
    assert not [a for a in raised if a.attempt_id == bridged.id]  # put through: no alert

    # nobody at the duty phone: the call-back line, an urgent alert, the contact done
    assert (late.ended, late.completed, late.transfer_to, late.transfer_answered) == (
        "transfer_failed", True, DEAF, False)
    assert any("值班人员暂时没有接听" in line["text"] for line in late.transcript
               if line["role"] == "bot")
    urgent = [a for a in raised if a.attempt_id == late.id]
    assert [(a.reason, a.urgent) for a in urgent] == [("human", True)]
    sent = robot.contents()
    assert len(sent) == 1 and "【紧急】要求人工回电" in sent[0]
    assert f"情况：居民要求转人工，值班电话 {DEAF} 无人接听" in sent[0]
    assert rep2["transfers"] == 1 and rep2["transfers_answered"] == 0
    from callbot.script import DEFAULT_SAY
    from callbot.speech.tts import make_tts

    heard_late = read_wav(next(c for c in log if c["number"] == LATE)["recording"])
    fallback = make_tts(settings).render(DEFAULT_SAY["end_transfer_failed"], rate="+40%")
    found, at, corr = contains(heard_late, read_wav(fallback))
    assert found, corr  # she heard that someone will call back
