"""Scripted calls end to end: the robot (pjsua2, espeak-ng prompts, the KWS recogniser, the
dialogue engine) calls the resident simulator, whose residents answer with recorded clips, keys
or silence. The calls run concurrently (4 lines) to keep the module short."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import callbot_cmd, env_for_subprocess, free_port
from tests.dialogue.conftest import FAST, models_dir, replies_dir

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]

CALLS = {
    # number: (template, replies)
    "2001": ("mask_reservation", ["xuyao.wav", "liangge.wav", "shide.wav"]),
    "2002": ("mask_reservation", ["buxuyao.wav"]),
    "2003": ("mask_reservation", ["dtmf:1", "dtmf:3", "dtmf:1"]),
    "2004": ("mask_reservation", []),
    "2005": ("welfare_check", ["wobushufu.wav"]),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Simulator + robot phone + TTS + ASR; every call of CALLS placed once, reports by number."""
    pytest.importorskip("pjsua2")
    pytest.importorskip("sherpa_onnx")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    replies = replies_dir()
    from callbot.config import SipConfig, load_settings
    from callbot.exceptions import ModelNotFoundError
    from callbot.residents import Simulator, read_call_log
    from callbot.session import run_call
    from callbot.speech.pinyin_asr import PinyinEngine as KwsEngine  # the engine calls use
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone

    try:
        asr = KwsEngine.load(models_dir=models_dir())
    except ModelNotFoundError as exc:
        pytest.skip(f"KWS model not available: {exc}")
    d = tmp_path_factory.mktemp("session")
    lines = ["residents:"]
    for number, (_tpl, said) in CALLS.items():
        refs = [r if r.startswith("dtmf:") else str(replies / r) for r in said]
        behaviour = "answer" if refs else "silent"
        lines.append(f"  - {{number: \"{number}\", behaviour: {behaviour}, replies: {json.dumps(refs)}}}")
    (d / "personas.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sim = Simulator(str(d / "personas.yaml"), str(d / "rec"), port=free_port(), procs=2)
    sim.start()
    tts = make_tts(load_settings({"CALLBOT_DATA_DIR": str(d / "var")}), engine="espeak")
    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3))
    phone.start()
    records: dict[str, list] = {n: [] for n in CALLS}

    def place(number: str):
        template, _ = CALLS[number]
        return run_call(phone, f"sip:{number}@127.0.0.1:{sim.port}", template,
                        {"姓名": "张阿姨"}, tts, asr, committee="幸福里居委会", tts_rate=FAST,
                        on_record=lambda f, v: records[number].append((f, v)))

    try:
        # render once up front so the concurrent calls share a warm cache
        place_first = list(CALLS)[:1]
        reports = {n: place(n) for n in place_first}
        with ThreadPoolExecutor(4) as pool:
            futures = {n: pool.submit(place, n) for n in CALLS if n not in reports}
            reports.update({n: f.result(timeout=240) for n, f in futures.items()})
        logs = {row["number"]: row for row in read_call_log(sim.record_dir, wait_for=CALLS)}
        yield {"reports": reports, "records": records, "logs": logs, "sim": sim, "dir": d}
    finally:
        phone.stop()
        sim.stop()


def test_yes_then_two_records_two_masks(world) -> None:
    rep = world["reports"]["2001"]
    assert rep.outcome == "answered" and rep.ended == "completed"
    assert rep.answers == {"need_masks": True, "masks": 2}
    assert world["records"]["2001"] == [("need_masks", True), ("masks", 2)]  # as heard, in order
    said = [t["text"] for t in rep.transcript if t["role"] == "callee"]
    assert said == ["需要", "两个", "是的"]
    assert rep.transcript[0]["text"].startswith("张阿姨您好，这里是幸福里居委会")
    assert rep.result.hangup_by == "robot"
    assert world["logs"]["2001"]["replies_given"][-1].endswith("shide.wav")


def test_no_records_zero_masks(world) -> None:
    rep = world["reports"]["2002"]
    assert rep.answers == {"need_masks": False, "masks": 0}
    assert rep.ended == "completed" and "不需要口罩" in rep.transcript[-1]["text"]


def test_keys_one_then_three_record_three_masks(world) -> None:
    rep = world["reports"]["2003"]
    assert rep.answers == {"need_masks": True, "masks": 3}
    assert rep.result.dtmf == "131"
    assert [t["text"] for t in rep.transcript if t["role"] == "callee"] == ["按键1", "按键3", "按键1"]


def test_silence_twice_records_nothing_and_says_goodbye(world) -> None:
    rep = world["reports"]["2004"]
    assert rep.outcome == "answered" and rep.ended == "no_input"
    assert rep.answers == {} and world["records"]["2004"] == []
    bot = [t["text"] for t in rep.transcript if t["role"] == "bot"]
    assert "您还在听吗" in bot[2] and bot[1] == bot[3]  # asked again once
    assert "再见" in bot[-1]
    assert rep.result.hangup_by == "robot"
    # the resident really heard the goodbye: its recording holds three spoken parts (ask, ask
    # again, goodbye), the last one played to its end, and the robot hung up soon after
    log = world["logs"]["2004"]
    parts = speech_parts(log["recording"])
    assert len(parts) == 3, parts
    assert parts[-1][1] - parts[-1][0] > 2.0  # the whole goodbye, not a cut-off start
    # the robot hung up soon after the goodbye ended, on the recording's own clock (it ends at
    # the hangup): talk_s starts at another moment than the recording (0.01-0.05 s apart
    # under load), and a cut goodbye fails the length check above
    from callbot.telephony.audio import read_wav

    assert len(read_wav(log["recording"])) / 8000 - parts[-1][1] < 1.5


def speech_parts(wav: str, gap_s: float = 1.0) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of speech in a recording."""
    from callbot.telephony.audio import read_wav, rms

    a = read_wav(wav)
    times = [i * 0.02 for i in range(len(a) // 160) if rms(a[i * 160:(i + 1) * 160]) > 300]
    parts: list[tuple[float, float]] = []
    for t in times:
        if parts and t - parts[-1][1] <= gap_s:
            parts[-1] = (parts[-1][0], t + 0.02)
        else:
            parts.append((t, t + 0.02))
    return parts


def test_welfare_flags_unwell_as_needs_help(world) -> None:
    rep = world["reports"]["2005"]
    assert rep.answers == {"welfare": "needs_help", "note": "我不舒服"}
    assert "网格员" in rep.transcript[-1]["text"]


def test_prompts_start_at_once_when_answered(world) -> None:
    for number, rep in world["reports"].items():
        assert rep.timings["answer_to_greeting"] and rep.timings["answer_to_greeting"][0] < 0.1, \
            (number, rep.timings)
        json.dumps(rep.to_json(), ensure_ascii=False, default=str)
        assert set(rep.to_json()) >= {"outcome", "answers", "transcript", "ended", "sip_code"}


SHORT = """\
name: short
requires: [姓名]
fields:
  need_masks: bool
steps:
  ask:
    ask: "{{ 姓名 }}，要口罩吗？要请按1，不要请按2。"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {need_masks: true}, next: bye}
      no: {set: {need_masks: false}, next: bye}
  bye:
    say: "好的，再见。"
    end: completed
"""


def test_callbot_call_with_a_template_prints_answers_and_transcript(world) -> None:
    d: Path = world["dir"]
    (d / "short.yaml").write_text(SHORT, encoding="utf-8")
    (d / "sip.conf").write_text(
        "[account]\nmode = direct\nbind = 127.0.0.1\nlocal_port = 0\ndomain = 127.0.0.1\n"
        "[media]\nrtp_port = 0\n[calls]\nring_timeout = 10\n", encoding="utf-8")
    env = env_for_subprocess(CALLBOT_TTS_ENGINE="espeak", CALLBOT_DATA_DIR=str(d / "var"))
    if models_dir():
        env["CALLBOT_MODELS_DIR"] = str(models_dir())
    proc = subprocess.run(
        callbot_cmd("call", f"sip:2003@127.0.0.1:{world['sim'].port}", "--template",
                    str(d / "short.yaml"), "--var", "姓名=李伯", "--sip-conf", str(d / "sip.conf"),
                    "--json"),
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["outcome"] == "answered" and out["ended"] == "completed"
    assert out["answers"] == {"need_masks": True}
    assert out["transcript"][0] == {**out["transcript"][0], "role": "bot", "text": "李伯，要口罩吗？要请按1，不要请按2。"}
    assert out["transcript"][1]["role"] == "callee" and out["transcript"][1]["text"] == "按键1"


def test_callbot_call_template_errors_come_before_dialling(world) -> None:
    proc = subprocess.run(callbot_cmd("call", "sip:2001@127.0.0.1:9", "--template", "mask_reservation"),
                          capture_output=True, text=True, env=env_for_subprocess(), timeout=60)
    assert proc.returncode != 0 and "--var 姓名=" in proc.stderr
    proc = subprocess.run(callbot_cmd("call", "sip:2001@127.0.0.1:9", "--template", "nope.yaml"),
                          capture_output=True, text=True, env=env_for_subprocess(), timeout=60)
    assert proc.returncode != 0 and "找不到模板" in proc.stderr


def test_callbot_call_keeps_the_replies_and_the_whole_call(world) -> None:
    """``callbot call --template --replies DIR --record FILE``: each reply's audio as the resident
    said it, and the whole call with both sides."""
    import numpy as np

    d: Path = world["dir"]
    (d / "sip2.conf").write_text(
        "[account]\nmode = direct\nbind = 127.0.0.1\nlocal_port = 0\ndomain = 127.0.0.1\n"
        "[media]\nrtp_port = 0\n[calls]\nring_timeout = 10\n", encoding="utf-8")
    env = env_for_subprocess(CALLBOT_TTS_ENGINE="espeak", CALLBOT_DATA_DIR=str(d / "var"))
    if models_dir():
        env["CALLBOT_MODELS_DIR"] = str(models_dir())
    proc = subprocess.run(
        callbot_cmd("call", f"sip:2005@127.0.0.1:{world['sim'].port}", "--template",
                    "welfare_check", "--var", "姓名=王阿姨", "--sip-conf", str(d / "sip2.conf"),
                    "--replies", str(d / "replies"), "--record", str(d / "whole.wav"), "--json"),
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answers"]["welfare"] == "needs_help"
    [reply] = out["replies"]
    assert reply["step"] == "ask_health" and Path(reply["file"]).is_file()

    def pcm(path: Path) -> np.ndarray:
        with wave.open(str(path), "rb") as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)

    clip, got = pcm(replies_dir() / "wobushufu.wav"), pcm(Path(reply["file"]))
    assert len(clip) / 8000 - 0.25 <= len(got) / 8000 <= len(clip) / 8000 + 0.8
    loud = np.sqrt((got ** 2).mean()) / np.sqrt((clip ** 2).mean())
    assert 0.4 <= loud <= 2.5, loud
    assert out["recording"] == str(d / "whole.wav")
    whole = pcm(d / "whole.wav")
    assert abs(len(whole) / 8000 - out["talk_s"]) <= 1.5
    # the robot's greeting (before any reply) and her reply are both in it
    assert np.sqrt((whole[: int(reply["start_s"] * 8000)] ** 2).mean()) > 300
    seg = whole[int(reply["start_s"] * 8000): int(reply["end_s"] * 8000)]
    assert np.sqrt((seg ** 2).mean()) > 300
