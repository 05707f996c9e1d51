"""The session's own logic with a scripted stand-in for the SIP call (fast, exact timing):
barge-in only where a prompt allows it, a reply said just before hanging up, a failing answer
store, an unanswered call. The real calls are in test_session.py."""

from __future__ import annotations

import functools
import queue
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from callbot.telephony.events import Answered, Disconnected, Dtmf, Frame, PlaybackEnded
from callbot.telephony.outcome import CallResult
from tests.conftest import REPLIES, SHARED

SILENCE = b"\0" * 320
NOTHING = object()


class ToneTts:
    """A stand-in TTS: a 440 Hz tone, 50 ms per character."""

    def __init__(self, d: Path):
        self.d = d
        self.rendered: list[str] = []

    def render(self, text: str, **_kw) -> Path:
        p = self.d / f"{abs(hash(text))}.wav"
        if not p.exists():
            n = int(len(text) * 0.05 * 8000)
            tone = (8000 * np.sin(np.arange(n) / 8000 * 2 * np.pi * 440)).astype("<i2")
            with wave.open(str(p), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(tone.tobytes())
        self.rendered.append(text)
        return p


class FakeCall:
    """Events come from a scenario generator that sees what the robot did so far."""

    def __init__(self, scenario: Callable[[FakeCall], Iterator]):
        self.t = 0.0
        self.plays: list[tuple[int, str, float]] = []  # (id, path, started at)
        self.stops: list[float] = []
        self.hung_up_at: float | None = None
        self.answered = False
        self.events = self
        self._n = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._current: tuple[int, float] | None = None  # (play id, ends at)
        self.completed_at: list[float] = []
        self._gen = scenario(self)

    # robot side (what Call offers)
    def play(self, path) -> int:
        self._end_current(False)
        self._n += 1
        with wave.open(str(path), "rb") as w:
            length = w.getnframes() / w.getframerate()
        self.plays.append((self._n, str(path), self.t))
        self._current = (self._n, self.t + length)
        return self._n

    def stop_playback(self) -> None:
        if self._current is not None:
            self.stops.append(self.t)
        self._end_current(False)

    def _end_current(self, completed: bool) -> None:
        if self._current is not None:
            self._queue.put(PlaybackEnded(self._current[0], completed=completed))
            if completed:
                self.completed_at.append(self.t)
            self._current = None

    def hangup(self) -> None:
        if self.hung_up_at is None:
            self.hung_up_at = self.t
            self._queue.put(Disconnected(self.result("robot")))

    def wait(self, timeout=None):
        return self.result("robot")

    def result(self, by: str | None) -> CallResult:
        return CallResult(number="x", uri="sip:x@127.0.0.1", outcome="answered" if self.answered
                          else "no_answer", sip_code=200 if self.answered else 487, reason="",
                          hangup_by=by if self.answered else None)

    # the session reads events here
    def get(self, timeout=None):
        if self._current is not None and self.t >= self._current[1]:
            self._end_current(True)  # the prompt played to its end
        if not self._queue.empty():
            return self._queue.get()
        if self.t > 300:
            raise AssertionError("the call went on for 300 simulated seconds")
        try:
            ev = next(self._gen)
        except StopIteration:
            raise AssertionError("scenario ended before the call did") from None
        if ev is NOTHING:  # no media at all: the session's wall-clock guards must act
            self.t += 0.1
            raise queue.Empty
        if isinstance(ev, Frame):
            self.t += 0.02
        if isinstance(ev, Answered):
            self.answered = True
        return ev

    @property
    def playing_s(self) -> float:
        """Seconds since the latest prompt started."""
        return self.t - self.plays[-1][2] if self.plays else 0.0


class FakePhone:
    def __init__(self, scenario):
        self.scenario = scenario
        self.call: FakeCall | None = None

    def dial(self, number, **_kw) -> FakeCall:
        self.call = FakeCall(self.scenario)
        return self.call


def clip(stem: str) -> bytes:
    from callbot.speech.audio import read_8k

    for d in (REPLIES, SHARED / "audio" / "replies"):
        if (d / f"{stem}.wav").is_file():
            return read_8k(d / f"{stem}.wav")
    pytest.skip("no reply clips")


def frames_of(pcm: bytes) -> Iterator[Frame]:
    from callbot.speech.audio import frames

    for f in frames(pcm):
        yield Frame(f)


@pytest.fixture(scope="module")
def asr():
    pytest.importorskip("sherpa_onnx")
    from callbot.exceptions import ModelNotFoundError
    from callbot.speech.pinyin_asr import PinyinEngine as KwsEngine  # the engine calls use

    try:
        return KwsEngine.load(models_dir=SHARED / "models" if (SHARED / "models").is_dir() else None)
    except ModelNotFoundError as exc:
        pytest.skip(f"KWS model not available: {exc}")


def call_with(scenario, asr, tmp_path, **kw):
    from callbot.session import run_call

    phone = FakePhone(scenario)
    records: list = []
    clock = lambda: phone.call.t if phone.call else 0.0  # noqa: E731
    report = run_call(phone, "x", "mask_reservation", {"姓名": "张阿姨"}, ToneTts(tmp_path), asr,
                      on_record=lambda f, v: records.append((f, v)), clock=clock, **kw)
    return report, records, phone.call


@functools.cache
def greeting_s() -> float:
    from callbot.dialogue import DialogueEngine
    from callbot.script import load_script

    return len(DialogueEngine(load_script("mask_reservation"), {"姓名": "张阿姨"}).start()[0].text) * 0.05


def test_barge_in_stops_the_question_and_the_reply_counts(asr, tmp_path) -> None:
    def scenario(call):
        yield Answered()
        while call.playing_s < greeting_s() + 1.0:  # well into the question
            yield Frame(SILENCE)
        yield from frames_of(clip("xuyao") + SILENCE * 40)
        while call.hung_up_at is None:
            yield Frame(SILENCE)

    report, records, call = call_with(scenario, asr, tmp_path)
    assert call.stops and call.stops[0] < call.plays[0][2] + greeting_s() + 2.0  # cut short
    assert records[0] == ("need_masks", True)
    question = [t for t in report.transcript if t.get("step") == "ask_need"][0]
    assert question["interrupted"] is True
    assert len(call.plays) >= 2  # the count question followed


def test_speech_over_the_greeting_is_not_an_answer(asr, tmp_path) -> None:
    def scenario(call):
        yield Answered()
        for _ in range(10):
            yield Frame(SILENCE)
        yield from frames_of(clip("buxuyao"))  # said over the greeting, which may not be interrupted
        while not call.completed_at:
            yield Frame(SILENCE)
        yield Disconnected(call.result("callee"))

    report, records, call = call_with(scenario, asr, tmp_path)
    assert call.stops == [] and records == []
    assert report.ended == "hung_up"


def test_reply_then_hang_up_at_once_is_still_recorded(asr, tmp_path) -> None:
    def scenario(call):
        yield Answered()
        while call.playing_s < greeting_s() + 8:
            yield Frame(SILENCE)
        yield from frames_of(clip("buxuyao"))
        yield Disconnected(call.result("callee"))  # no trailing silence: the reply never "ended"

    report, records, call = call_with(scenario, asr, tmp_path)
    assert records == [("need_masks", False), ("masks", 0)]
    assert report.ended == "completed" or report.ended == "hung_up"


def test_keys_skip_the_rest_of_the_prompt(asr, tmp_path) -> None:
    def scenario(call):
        yield Answered()
        while call.playing_s < greeting_s() + 0.5:
            yield Frame(SILENCE)
        yield Dtmf("2")
        while call.hung_up_at is None:
            yield Frame(SILENCE)

    report, records, call = call_with(scenario, asr, tmp_path)
    assert records == [("need_masks", False), ("masks", 0)]
    assert call.stops  # the question was cut when the key came
    assert report.ended == "completed" and report.result.hangup_by == "robot"
    # the robot hung up only after the goodbye had played to its end
    assert call.completed_at and call.hung_up_at >= call.completed_at[-1] > call.plays[-1][2]


def test_a_failing_answer_store_hangs_up_and_raises(asr, tmp_path) -> None:
    from callbot.session import run_call

    def scenario(call):
        yield Answered()
        while call.playing_s < greeting_s() + 0.5:
            yield Frame(SILENCE)
        yield Dtmf("1")
        while True:
            yield Frame(SILENCE)

    phone = FakePhone(scenario)

    def store(_f, _v):
        raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        run_call(phone, "x", "mask_reservation", {"姓名": "张阿姨"}, ToneTts(tmp_path), asr,
                 on_record=store, clock=lambda: phone.call.t if phone.call else 0.0)
    assert phone.call.hung_up_at is not None


def test_unanswered_call_has_no_dialogue(asr, tmp_path) -> None:
    def scenario(call):
        yield Disconnected(call.result(None))

    tts = ToneTts(tmp_path)
    from callbot.session import run_call

    phone = FakePhone(scenario)
    report = run_call(phone, "x", "welfare_check", {"姓名": "张阿姨"}, tts, asr)
    assert report.outcome == "no_answer" and report.ended is None
    assert report.answers == {} and report.transcript == []
    # every prompt was rendered before dialling
    assert any("网格员" in t for t in tts.rendered) and any("再见" in t for t in tts.rendered)


def test_bad_template_fails_before_dialling(asr, tmp_path) -> None:
    from callbot.exceptions import TemplateError
    from callbot.session import run_call

    phone = FakePhone(lambda call: iter(()))
    with pytest.raises(TemplateError):
        run_call(phone, "x", "no_such_template", {}, ToneTts(tmp_path), asr)
    assert phone.call is None


def test_no_media_at_all_still_ends_politely(asr, tmp_path) -> None:
    def scenario(call):
        yield Answered()
        while call.hung_up_at is None:
            yield NOTHING

    report, records, call = call_with(scenario, asr, tmp_path)
    assert report.ended == "no_input" and records == []
    assert "再见" in report.transcript[-1]["text"]
    assert call.completed_at and call.hung_up_at >= call.completed_at[-1]


def test_the_question_asked_again_is_rendered_slower_before_dialling(tmp_path) -> None:
    """你说什么 → the question again, slower: its own prompt at the script's rate less
    DIALOGUE_REPEAT_RATE_DELTA points, pre-rendered with the others."""
    from callbot.dialogue import DialogueEngine, Say
    from callbot.prompts import Prompts, prompt_key, slower
    from callbot.script import load_script

    calls: list[tuple[str, str | None]] = []

    class RateTts(ToneTts):
        def render(self, text: str, **kw) -> Path:
            calls.append((text, kw.get("rate")))
            return super().render(text + str(kw.get("rate")))

    engine = DialogueEngine(load_script("welfare_check"), {"姓名": "张阿姨"})
    prompts = Prompts(RateTts(tmp_path), engine.prompts(), tmp_path, rate="-15%",
                       slow=engine.slow_prompts())
    assert slower("-15%") == "-35%" and slower("+40%") == "+20%" and slower("-45%") == "-50%"
    assert ("您最近身体怎么样？", "-35%") in calls and ("您最近身体怎么样？", "-15%") in calls
    normal = prompts.duration(prompt_key(Say("您最近身体怎么样？", "ask_health")))
    again = prompts.duration(prompt_key(Say("您最近身体怎么样？", "ask_health", slow=True)))
    assert again > 0 and normal > 0
    assert prompt_key(Say("x", "s", slow=True)) != prompt_key(Say("x", "s"))
    n = len(calls)
    prompts.duration(prompt_key(Say("您最近身体怎么样？", "ask_health", slow=True)))
    assert len(calls) == n  # nothing rendered during the call


def test_reply_audio_is_compressed_only_once_the_next_prompt_started(asr, tmp_path,
                                                                       monkeypatch) -> None:
    """The audio thread (Opus + blob write) must not compete with the reply → prompt path: a
    reply's audio is handed over before the next prompt starts, and compressed after it."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    import callbot.campaign.models  # noqa: F401 - the tables the recordings point at
    from callbot import recordings
    from callbot.db import Base

    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
    Base.metadata.create_all(engine)
    factory = sessionmaker(engine)
    store = recordings.DatabaseStore(factory)
    phone_call: list = []
    handed: list[int] = []  # prompts started when the reply was handed over
    encoded: list[int] = []  # … and when its audio was compressed
    real_encode = recordings.encode

    def encode(pcm: bytes, *a, **kw) -> bytes:
        encoded.append(len(phone_call[0].plays))
        return real_encode(pcm, *a, **kw)

    monkeypatch.setattr(recordings, "encode", encode)
    pool = ThreadPoolExecutor(1)
    jobs: list = []

    def on_reply(reply) -> None:
        handed.append(len(phone_call[0].plays))
        jobs.append(pool.submit(recordings.put_audio, factory, store, 1, f"k{len(jobs)}",
                                reply.audio))

    def scenario(call):
        phone_call.append(call)
        yield Answered()
        while call.playing_s < greeting_s() + 1.0:
            yield Frame(SILENCE)
        yield from frames_of(clip("xuyao") + SILENCE * 40)
        while call.hung_up_at is None:
            yield Frame(SILENCE)

    report, records, call = call_with(scenario, asr, tmp_path, on_reply=on_reply)
    assert [j.result(10) > 0 for j in jobs] == [True] * len(jobs) and jobs
    assert records[0] == ("need_masks", True)
    # each reply's audio waited for the prompt that followed it (the greeting, then the
    # question after the reply: the second prompt); it is handed over once that started
    assert encoded == [2] * len(jobs) and handed == [2] * len(jobs), (handed, encoded)
    assert recordings.TURNS.busy == 0
    pool.shutdown()


def test_the_next_question_starts_before_the_reply_is_stored(asr, tmp_path) -> None:
    """The reply → prompt wait holds no database write: after a reply that only leads to the
    next question, that question starts and the reply and its answers are stored right after
    (at a burst the write lock of a host's SQLite is shared by all its line processes). The
    last reply, which ends the dialogue, is stored with the end before the goodbye plays."""
    from callbot.session import run_call

    seen: list[tuple[str, object, bool]] = []  # (field or event, value, a prompt started now)

    def scenario(call):
        yield Answered()
        for stem in ("xuyao", "liangge", "shide"):
            n = len(call.plays)
            while len(call.plays) == n or call.playing_s < 0.5:  # the next prompt is playing
                yield Frame(SILENCE)
            yield from frames_of(clip(stem) + SILENCE * 40)
        while call.hung_up_at is None:
            yield Frame(SILENCE)

    phone = FakePhone(scenario)

    def now(what: str, value: object) -> None:
        call = phone.call
        assert call is not None
        seen.append((what, value, call.plays[-1][2] == call.t))  # (the clock moves per frame)

    rep = run_call(phone, "x", "mask_reservation", {"姓名": "张阿姨"}, ToneTts(tmp_path), asr,
                   on_record=now, on_reply=lambda r: now("reply", r.text),
                   on_end=lambda why: now("end", why),
                   clock=lambda: phone.call.t if phone.call else 0.0)
    assert rep.ended == "completed" and rep.answers == {"need_masks": True, "masks": 2}
    # 需要 → the count question, 两个 → the confirmation: each started before the store
    assert seen[:4] == [("reply", "需要", True), ("need_masks", True, True),
                        ("reply", "两个", True), ("masks", 2, True)], seen
    # 是的 ends it: stored, and the end, before the goodbye started
    assert [(k, started) for k, _v, started in seen[4:]] == [("reply", False), ("end", False)], seen
