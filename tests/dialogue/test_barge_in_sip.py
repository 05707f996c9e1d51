"""Barge-in over real SIP: the resident simulator talks over the robot's prompt
(``barge_in_after_s``) and we check what the resident heard (the energy of its recording) and
what the robot recorded. The robot is the real session: pjsua2, espeak-ng prompts, the KWS
recogniser, the dialogue engine; the residents answer with the recorded clips in
callbot/data/replies.

Nothing here times the wall clock: spans of speech in the resident's recording are compared with
the full length of the prompt WAVs, with margins of a second or more."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.dialogue.conftest import FAST, models_dir, replies_dir

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]

VARS = {"姓名": "张阿姨"}
COMMITTEE = "幸福里居委会"
BARGE_INTO_QUESTION_S = 1.2
"""How far into the question (after the greeting, which may not be interrupted) residents talk."""

NO_BARGE = """\
name: no_barge
requires: [姓名]
fields:
  need_masks: bool
handlers:
  no_input: {say: "您好，您还在听吗？", retries: 1}
steps:
  ask:
    ask: "{{ 姓名 }}您好，请问您家需要预约口罩吗？需要请说需要，不需要请说不需要。"
    barge_in: false
    timeout: 3
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {need_masks: true}, next: bye}
      no: {set: {need_masks: false}, next: bye}
  bye:
    say: "好的，已经记下了，再见。"
    end: completed
"""


def _opening(script, tts) -> list[tuple[str, float]]:
    """(text, seconds) of each prompt the call opens with, rendered as the call renders them."""
    from callbot.dialogue import DialogueEngine, Say
    from callbot.prompts import prompt_files
    from callbot.telephony.audio import read_wav

    says = [a.text for a in DialogueEngine(script, VARS, committee=COMMITTEE).start()
            if isinstance(a, Say)]
    files = prompt_files(tts, says, voice=script.voice, rate=FAST)
    return [(t, len(read_wav(files[t])) / 8000) for t in says]


def _duration(script, tts, text: str) -> float:
    from callbot.prompts import prompt_files
    from callbot.telephony.audio import read_wav

    return len(read_wav(prompt_files(tts, [text], voice=script.voice, rate=FAST)[text])) / 8000


def speech_parts(wav: str, gap_s: float = 0.6) -> list[tuple[float, float]]:
    """(start, end) seconds of each stretch of speech in a recording (the simulator's own rule:
    RMS above 300, a gap of 0.6 s ends a stretch)."""
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


def _part_at(parts: list[tuple[float, float]], t: float) -> tuple[float, float]:
    """The stretch of the robot's speech that was playing at *t*."""
    hits = [p for p in parts if p[0] <= t <= p[1]]
    assert hits, f"no robot speech at {t:.2f} s; speech: {parts}"
    return hits[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("pjsua2")
    pytest.importorskip("sherpa_onnx")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    replies = replies_dir()
    from callbot.config import SipConfig, load_settings
    from callbot.exceptions import ModelNotFoundError
    from callbot.residents import Simulator, read_call_log
    from callbot.script import load_script
    from callbot.session import run_call
    from callbot.speech.pinyin_asr import PinyinEngine as KwsEngine  # the engine calls use
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone
    from tests.conftest import free_port

    try:
        asr = KwsEngine.load(models_dir=models_dir())
    except ModelNotFoundError as exc:
        pytest.skip(f"KWS model not available: {exc}")
    d = tmp_path_factory.mktemp("barge")
    tts = make_tts(load_settings({"CALLBOT_DATA_DIR": str(d / "var")}), engine="espeak")
    mask = load_script("mask_reservation")
    (d / "no_barge.yaml").write_text(NO_BARGE, encoding="utf-8")
    no_barge = load_script(d / "no_barge.yaml")
    # every prompt rendered up front, so the three calls start at once and alike
    from callbot.dialogue import DialogueEngine
    from callbot.prompts import prompt_files

    for script in (mask, no_barge):
        prompt_files(tts, DialogueEngine(script, VARS, committee=COMMITTEE).prompts(),
                     voice=script.voice, rate=FAST)
    mask_open = _opening(mask, tts)
    nb_open = _opening(no_barge, tts)
    assert [len(mask_open), len(nb_open)] == [2, 1]  # greeting + question; the question alone
    greeting_s = mask_open[0][1]

    def clip(name: str, after: float | None = None) -> dict | str:
        ref = name if name.startswith("dtmf:") else str(replies / name)
        return ref if after is None else {"reply": ref, "barge_in_after_s": after}

    personas = {
        # 需要 over the question (not over the greeting, which may not be interrupted), then
        # 两个 over the next question, then 是的 after the confirmation as usual
        "3001": [clip("xuyao.wav", greeting_s + BARGE_INTO_QUESTION_S),
                 clip("liangge.wav", BARGE_INTO_QUESTION_S), clip("shide.wav")],
        # 需要 over a question that forbids barge-in, then 需要 again after the re-ask
        "3002": [clip("xuyao.wav", 1.5), clip("xuyao.wav")],
        # key 1 pressed over that question: it waits for the question's end, then counts
        "3003": [clip("dtmf:1", 1.5)],
    }
    (d / "personas.yaml").write_text(json.dumps({"residents": [
        {"number": n, "replies": r} for n, r in personas.items()]}, ensure_ascii=False),
        encoding="utf-8")  # JSON is YAML
    sim = Simulator(str(d / "personas.yaml"), str(d / "rec"), port=free_port(), procs=1)
    sim.start()
    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3))
    phone.start()
    scripts = {"3001": mask, "3002": no_barge, "3003": no_barge}
    records: dict[str, list] = {n: [] for n in scripts}

    def place(number: str):
        return run_call(phone, f"sip:{number}@127.0.0.1:{sim.port}", scripts[number], VARS, tts,
                        asr, committee=COMMITTEE, tts_rate=FAST,
                        on_record=lambda f, v: records[number].append((f, v)))

    try:
        with ThreadPoolExecutor(len(scripts)) as pool:
            futures = {n: pool.submit(place, n) for n in scripts}
            reports = {n: f.result(timeout=240) for n, f in futures.items()}
        logs = {row["number"]: row for row in read_call_log(sim.record_dir, wait_for=scripts)}
        yield {"reports": reports, "records": records, "logs": logs, "tts": tts,
               "mask": mask, "no_barge": no_barge, "mask_open": mask_open, "nb_open": nb_open}
    finally:
        phone.stop()
        sim.stop()


def test_talking_over_the_questions_cuts_them_short_and_records_two_masks(world) -> None:
    rep = world["reports"]["3001"]
    assert rep.outcome == "answered" and rep.ended == "completed", rep.transcript
    assert rep.answers == {"need_masks": True, "masks": 2}
    assert world["records"]["3001"] == [("need_masks", True), ("masks", 2)]
    assert [t["text"] for t in rep.transcript if t["role"] == "callee"] == ["需要", "两个", "是的"]
    bot = [t for t in rep.transcript if t["role"] == "bot"]
    # the greeting may not be interrupted and was not; both questions were
    assert [b["step"] for b in bot[:3]] == ["greet", "ask_need", "ask_count"]
    assert [bool(b.get("interrupted")) for b in bot] == [False, True, True, False, False]

    log = world["logs"]["3001"]
    assert [p for p, _t in log["barge_ins"]] == [1, 2]  # both replies talked over a prompt
    parts = speech_parts(log["recording"])
    # what the resident heard: the opening (greeting + question) stopped soon after it spoke,
    # far short of its full length
    full_opening = sum(s for _t, s in world["mask_open"])
    start1 = log["barge_ins"][0][1]
    p1 = _part_at(parts, start1 - 0.1)
    assert p1[1] - start1 < 1.5, (p1, start1)
    assert p1[1] - p1[0] < full_opening - 2.0, (p1, full_opening)
    assert p1[1] - p1[0] > world["mask_open"][0][1] - 1.0  # the whole greeting was heard
    # …and so did the next question (how many boxes)
    ask_count = next(b["text"] for b in bot if b["step"] == "ask_count")
    full_count = _duration(world["mask"], world["tts"], ask_count)
    start2 = log["barge_ins"][1][1]
    p2 = _part_at(parts, start2 - 0.1)
    assert p2[0] > p1[1] and p2[1] - start2 < 1.5, (p2, start2)
    assert p2[1] - p2[0] < full_count - 2.0, (p2, full_count)
    # the confirmation was not talked over: it played to its end before 是的
    confirm = next(b["text"] for b in bot if b["step"] == "confirm")
    p3 = [p for p in parts if p[0] > p2[1]][0]
    assert p3[1] - p3[0] > _duration(world["mask"], world["tts"], confirm) - 1.0


def test_speech_over_a_question_that_forbids_barge_in_does_not_cut_it(world) -> None:
    rep = world["reports"]["3002"]
    assert rep.outcome == "answered" and rep.ended == "completed", rep.transcript
    # the 需要 said over the prompt was not taken (the robot did not listen yet): it heard
    # nothing afterwards, asked once more, and took the 需要 said after the re-ask
    assert rep.answers == {"need_masks": True}
    assert world["records"]["3002"] == [("need_masks", True)]
    assert [t["text"] for t in rep.transcript if t["role"] == "callee"] == ["需要"]
    bot = [t for t in rep.transcript if t["role"] == "bot"]
    question = world["nb_open"][0][0]
    assert [b["text"] for b in bot][:3] == [question, "您好，您还在听吗？", question]
    assert not any(b.get("interrupted") for b in bot)

    log = world["logs"]["3002"]
    assert [p for p, _t in log["barge_ins"]] == [1]
    start = log["barge_ins"][0][1]
    full = world["nb_open"][0][1]
    p1 = _part_at(speech_parts(log["recording"]), start - 0.1)
    assert p1[1] - start > 1.0  # the resident really talked over it, well before its end
    assert p1[1] - p1[0] > full - 1.0, (p1, full)  # and the whole question was still heard


def test_a_key_over_a_question_that_forbids_barge_in_waits_for_its_end(world) -> None:
    rep = world["reports"]["3003"]
    assert rep.outcome == "answered" and rep.ended == "completed", rep.transcript
    assert rep.answers == {"need_masks": True} and rep.result.dtmf == "1"
    assert [t["text"] for t in rep.transcript if t["role"] == "callee"] == ["按键1"]
    bot = [t for t in rep.transcript if t["role"] == "bot"]
    assert [b["step"] for b in bot] == ["ask", "bye"]  # taken at once: no re-ask
    assert not any(b.get("interrupted") for b in bot)

    log = world["logs"]["3003"]
    assert log["dtmf_sent"] == "1" and [p for p, _t in log["barge_ins"]] == [1]
    start = log["barge_ins"][0][1]
    full = world["nb_open"][0][1]
    parts = speech_parts(log["recording"])
    p1 = _part_at(parts, start - 0.1)
    assert p1[1] - start > 1.0  # the key came well before the question's end…
    assert p1[1] - p1[0] > full - 1.0, (p1, full)  # …and the whole question was still heard
    # the key counted the moment the question ended: the goodbye follows straight on (the
    # resident hears one stretch of speech: the whole question, then the whole goodbye)
    bye = _duration(world["no_barge"], world["tts"], bot[-1]["text"])
    assert p1[1] - p1[0] > full + bye - 1.0, (parts, full, bye)
