"""转人工 and alerts in the pure dialogue engine, the template checks, the transfer's state machine
over fake call handles (a fast layer beside test_transfer_sip.py), the line worker's spare call
slot, and ``callbot simulate --json`` (alerts and transfer, nothing sent)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from callbot.dialogue import (
    Alert,
    DialogueEngine,
    Digit,
    HangUp,
    Heard,
    Say,
    Silence,
    Transfer,
    TransferResult,
)
from callbot.exceptions import TemplateError
from callbot.script import DEFAULT_SAY, load_script, parse_script
from tests.conftest import callbot_cmd, env_for_subprocess

SCRIPT = str(Path(__file__).with_name("ask_transfer.yaml"))


def _asked() -> tuple[DialogueEngine, list]:  # type: ignore[type-arg]
    engine = DialogueEngine(load_script(SCRIPT), {"姓名": "陈奶奶"})
    engine.start()
    return engine, engine.on(Heard("是的"))


def test_a_transfer_answer_says_its_line_then_asks_for_the_duty_phone() -> None:
    engine, acts = _asked()
    kinds = [type(a).__name__ for a in acts]
    assert kinds == ["Record", "Say", "Transfer"]
    say = acts[1]
    assert say.text == DEFAULT_SAY["transfer"] and not say.barge_in_allowed
    assert engine.transferring and engine.ended is None and engine.step is None
    assert engine.on(Heard("喂？")) == []  # nothing is asked while the duty phone rings
    assert engine.on(TransferResult(True, "88880001")) == [HangUp("transfer")]
    assert engine.ended == "transfer" and engine.alerts == []


def test_an_unanswered_transfer_says_someone_will_call_and_raises_an_urgent_alert() -> None:
    engine, _ = _asked()
    acts = engine.on(TransferResult(False, "88880001"))
    alert = next(a for a in acts if isinstance(a, Alert))
    assert (alert.reason, alert.urgent, alert.said) == ("human", True, "是的")
    assert alert.detail == "居民要求转人工，值班电话 88880001 无人接听，请尽快回电"
    assert [a.text for a in acts if isinstance(a, Say)] == [DEFAULT_SAY["end_transfer_failed"]]
    assert acts[-1] == HangUp("transfer_failed") and engine.ended == "transfer_failed"


def test_a_silence_handler_may_transfer_too() -> None:
    text = Path(SCRIPT).read_text("utf-8").replace(
        "      no: bye\n", "      no: bye\n    no_input: {transfer: true, say: 好的，帮您转人工。}\n")
    engine = DialogueEngine(parse_script(text), {"姓名": "陈奶奶"})
    engine.start()
    engine.on(Silence())
    acts = engine.on(Silence())  # retries exhausted (1 by default)
    assert isinstance(acts[-1], Transfer) and any(
        isinstance(a, Say) and a.text == "好的，帮您转人工。" for a in acts)


def test_a_key_can_transfer() -> None:
    engine = DialogueEngine(load_script(SCRIPT), {"姓名": "陈奶奶"})
    engine.start()
    assert isinstance(engine.on(Digit("1"))[-1], Transfer)


@pytest.mark.parametrize("bad, says", [
    ("yes: {transfer: 是}", "transfer 只能写 true 或 false"),
    ("yes: {set: {asked: true}, transfer: true, next: nowhere}", "下一步 'nowhere' 不存在"),
])
def test_template_checks_transfer(bad: str, says: str) -> None:
    text = Path(SCRIPT).read_text("utf-8").replace(
        "yes: {set: {asked: true}, transfer: true}", bad)
    with pytest.raises(TemplateError) as exc:
        parse_script(text, filename="t.yaml")
    assert says in str(exc.value) and "t.yaml:14" in str(exc.value)


def _builtin(name: str, reply: str, *, duty: bool) -> tuple[DialogueEngine, list]:  # type: ignore[type-arg]
    engine = DialogueEngine(load_script(name), {"姓名": "陈奶奶"}, can_transfer=duty)
    engine.start()
    return engine, engine.on(Heard(reply))


@pytest.mark.parametrize("name", ["welfare_check", "mask_reservation"])
def test_the_builtins_put_a_request_for_a_person_through(name: str) -> None:
    engine, acts = _builtin(name, "我要找人工", duty=True)
    assert isinstance(acts[-1], Transfer) and acts[-2].text == DEFAULT_SAY["transfer"]
    assert engine.alerts == []  # put through: nobody needs telling yet
    acts = engine.on(TransferResult(False, "88880001"))
    assert [(a.reason, a.urgent) for a in acts if isinstance(a, Alert)] == [("human", True)]
    assert engine.ended == "transfer_failed"
    # no duty phone configured: the call-back line and a (not urgent) alert, as before
    engine, acts = _builtin(name, "我要找人工", duty=False)
    assert not any(isinstance(a, Transfer) for a in acts)
    assert [a.text for a in acts if isinstance(a, Say)] == [DEFAULT_SAY["end_human"]]
    assert [(a.reason, a.urgent) for a in engine.alerts] == [("human", False)]
    assert engine.ended == "human"


def test_the_welfare_builtin_puts_an_emergency_through() -> None:
    engine, acts = _builtin("welfare_check", "我摔了一跤站不起来", duty=True)
    assert engine.answers == {"welfare": "needs_help", "urgent": True, "note": "我摔了一跤站不起来"}
    assert [(a.reason, a.urgent) for a in acts if isinstance(a, Alert)] == [("needs_help", True)]
    assert isinstance(acts[-1], Transfer) and "转接" in acts[-2].text
    acts = engine.on(TransferResult(False, "88880001"))
    alert = next(a for a in acts if isinstance(a, Alert))
    assert alert.urgent and "情况紧急" in alert.detail and "88880001 无人接听" in alert.detail
    assert [a.text for a in acts if isinstance(a, Say)] == [
        DEFAULT_SAY["end_transfer_failed_urgent"]]  # 120 again, not only "we will call back"
    # no duty phone: the comforting line of the template, an urgent alert, no transfer
    engine, acts = _builtin("welfare_check", "我摔了一跤站不起来", duty=False)
    assert not any(isinstance(a, Transfer) for a in acts) and engine.ended == "completed"
    assert any("保持电话畅通" in a.text for a in acts if isinstance(a, Say))
    assert [(a.reason, a.urgent) for a in engine.alerts] == [("needs_help", True)]


class _Call:
    def __init__(self) -> None:
        self.answered = False
        self.done = False
        self.result = None
        self.bridged_to: Any = None
        self.hung_up = False
        self.max_s = 0.0

    def bridge(self, other) -> bool:  # type: ignore[no-untyped-def]
        self.bridged_to = other
        return True

    def extend(self, s: float) -> None:
        self.max_s = s

    def hangup(self) -> None:
        self.hung_up = True
        self.done = True

    def wait(self, _t: float) -> None:
        return None


class _Phone:
    def __init__(self, full: int = 0) -> None:
        self.full = full
        self.dialled: list[Any] = []

    def dial(self, number: str, **kw):  # type: ignore[no-untyped-def]
        from callbot.exceptions import TooManyCallsError

        if self.full:
            self.full -= 1
            raise TooManyCallsError("4 calls")
        c = _Call()
        self.dialled.append((number, kw, c))
        return c


def test_leg_waits_for_a_slot_bridges_and_ends_with_the_duty_phone() -> None:
    from callbot.transfer import TransferLeg, TransferPlan

    now = [0.0]
    phone, resident = _Phone(full=2), _Call()
    leg = TransferLeg(phone, resident, TransferPlan("88880001", timeout_s=20), lambda: now[0])
    assert leg.start() is None and leg.poll() is None  # no slot yet: waits
    assert leg.poll() is None and len(phone.dialled) == 1
    number, kw, duty = phone.dialled[0]  # (number, options, the _Call)
    assert number == "88880001" and 19 <= kw["ring_timeout"] <= 20
    now[0] = 3.0
    duty.answered = True
    result = leg.poll()
    assert result == TransferResult(True, "88880001") and resident.bridged_to is duty
    assert leg.bridged and resident.max_s > 3600
    now[0] = 63.0
    duty.done = True
    assert leg.poll() is None and resident.hung_up and leg.record.answered
    assert leg.record.talk_s == 60.0 and leg.record.ring_s == 3.0


def test_leg_fails_without_a_duty_number_or_an_answer() -> None:
    from callbot.transfer import TransferLeg, TransferPlan

    assert TransferLeg(_Phone(), _Call(), TransferPlan(None)).start() == TransferResult(False, "")
    now = [0.0]
    phone = _Phone()
    leg = TransferLeg(phone, _Call(), TransferPlan("88880001", timeout_s=5), lambda: now[0])
    leg.start()
    duty = phone.dialled[0][2]
    duty.done = True  # rang out
    assert leg.poll() == TransferResult(False, "88880001")
    assert "未接通" in leg.record.reason and not leg.record.answered


def test_line_workers_keep_a_call_slot_for_the_duty_phone() -> None:
    from callbot.campaign.worker import lines_per_process, processes_for
    from callbot.config import load_settings
    from callbot.exceptions import CampaignError

    assert lines_per_process(load_settings({})) == 3
    assert processes_for(4) == 2 and processes_for(6) == 2
    assert lines_per_process(load_settings({"CALLBOT_TRANSFER_SPARE_LEGS": "2"})) == 2
    assert lines_per_process(load_settings({"CALLBOT_TRANSFER_SPARE_LEGS": "0"})) == 4
    with pytest.raises(CampaignError, match="CALLBOT_TRANSFER_SPARE_LEGS"):
        lines_per_process(load_settings({"CALLBOT_TRANSFER_SPARE_LEGS": "4"}))


def test_sip_conf_transfer_method(tmp_path: Path) -> None:
    from callbot.config import load_sip_conf
    from callbot.exceptions import ConfigError

    conf = tmp_path / "sip.conf"
    conf.write_text("[calls]\ntransfer = refer\n", "utf-8")
    assert load_sip_conf(conf).transfer == "refer"
    conf.write_text("[calls]\ntransfer = blind\n", "utf-8")
    with pytest.raises(ConfigError, match=r"\[calls\] transfer"):
        load_sip_conf(conf)


def _simulate(template: str, replies: list[str], *extra: str, **env: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(callbot_cmd("simulate", template, "--json", "--var", "姓名=陈奶奶",
                                      *extra), input="".join(r + "\n" for r in replies),
                          capture_output=True, text=True, env=env_for_subprocess(**env), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_simulate_shows_the_alert_and_the_transfer_and_sends_nothing(tmp_path: Path) -> None:
    out = _simulate("welfare_check", ["不太好"], CALLBOT_DATA_DIR=str(tmp_path / "var"))
    assert out["alerts"] == [{"reason": "needs_help", "urgent": False, "said": "不太好",
                              "detail": ""}]
    assert out["transfer"] is None
    assert not (tmp_path / "var").exists()  # no database made, nothing queued or sent
    env = {"CALLBOT_DATA_DIR": str(tmp_path / "var"), "CALLBOT_DUTY_NUMBER": "88880001"}
    out = _simulate(SCRIPT, ["是的"], **env)
    assert out["transfer"] == {"to": "88880001", "timeout_s": 20.0, "answered": True,
                               "say": DEFAULT_SAY["transfer"]}
    assert out["ended"] == "transfer" and out["alerts"] == []
    out = _simulate(SCRIPT, ["是的"], "--duty", "no-answer", **env)
    assert out["ended"] == "transfer_failed" and out["transfer"]["answered"] is False
    assert out["alerts"] == [{"reason": "human", "urgent": True, "said": "是的",
                              "detail": "居民要求转人工，值班电话 88880001 无人接听，请尽快回电"}]
    # the built-in, with a duty phone: put through (without one: the engine tests above)
    out = _simulate("welfare_check", ["我要找人工"], **env)
    assert out["ended"] == "transfer" and out["transfer"]["to"] == "88880001"
