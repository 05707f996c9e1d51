"""Endpointing and matching with a recording fake decoder (fast, beside the real-engine tests):
audio reaches the decoder only around speech, and the events come at the right times."""

from __future__ import annotations

import numpy as np
import pytest

from callbot.speech.asr import EndpointingStream, Final, NoInput, SpeechStarted, pick_match
from callbot.speech.audio import Upsampler2x, frames, read_8k
from tests.speech.conftest import REPLIES

SILENCE = b"\0" * 320


class RecordingDecoder:
    """Counts the audio it is given; says whatever it was told to."""

    def __init__(self, text: str = "需要"):
        self.text = text
        self.fed = 0

    def feed(self, pcm: bytes) -> str | None:
        self.fed += len(pcm)
        return None

    def result(self):
        return self.text, pick_match(self.text, ["需要", "不需要"]), 0.9


def stream(dec, **kw) -> EndpointingStream:
    opts = {"no_input_s": 5.0, "max_reply_s": 8.0, "trailing_silence_s": 0.8} | kw
    return EndpointingStream(dec, **opts)


def test_idle_line_never_reaches_the_decoder() -> None:
    dec = RecordingDecoder()
    s = stream(dec, no_input_s=3.0)
    events = [e for _ in range(200) for e in s.accept(SILENCE)]
    assert events == [NoInput(3.0)] and dec.fed == 0


def test_reply_is_decoded_from_just_before_speech_to_trailing_silence() -> None:
    dec = RecordingDecoder()
    s = stream(dec)
    speech = read_8k(REPLIES / "xuyaobangzhu.wav")
    events = []
    for f in frames(b"\0" * 16000 + speech + b"\0" * 32000):  # 1 s quiet, reply, 2 s quiet
        events += s.accept(f)
    assert isinstance(events[0], SpeechStarted) and 0.95 <= events[0].start_s <= 1.3
    final = events[-1]
    assert isinstance(final, Final)
    assert (final.text, final.match, final.confidence) == ("需要", "需要", 0.9)
    reply_end = 1.0 + len(speech) / 16000
    assert reply_end - 0.3 <= final.end_s <= reply_end + 0.25
    # decoded: the pre-roll (300 ms), the speech and the trailing silence, not the quiet before
    fed_s = dec.fed / 16000
    assert fed_s <= 0.3 + (final.end_s - events[0].start_s) + 0.8 + 0.1
    assert s.accept(SILENCE) == [] and s.finish() == []


def test_final_carries_the_reply_audio_from_preroll_to_end_of_speech() -> None:
    """Final.audio is the reply as spoken: the whole clip (its own quiet edges aside), none of
    the 1 s quiet before it beyond the preroll, none of the 2 s after it beyond the tail."""
    s = stream(RecordingDecoder())
    speech = read_8k(REPLIES / "xuyaobangzhu.wav")
    events = []
    for f in frames(b"\0" * 16000 + speech + b"\0" * 32000):
        events += s.accept(f)
    final = events[-1]
    assert isinstance(final, Final) and final.audio
    started = events[0].start_s
    # the audio begins with the preroll: 300 ms before speech was confirmed, ≥ 100 ms before
    # its first voiced frame
    assert started - 0.3 - 0.001 <= final.start_s <= started - 0.1 + 0.001
    dur = len(final.audio) / 16000
    assert abs(final.start_s + dur - (final.end_s + 0.2)) <= 0.021
    # its loud part is the clip's loud part, sample for sample
    clip = np.frombuffer(speech, dtype="<i2")
    got = np.frombuffer(final.audio, dtype="<i2")
    offset = round((final.start_s - 1.0) * 8000)
    voiced = np.flatnonzero(np.abs(clip) > 500)
    lo, hi = voiced[0], voiced[-1]
    assert offset <= lo and hi - offset < len(got), (offset, lo, hi, len(got))
    assert np.array_equal(got[lo - offset:hi - offset], clip[lo:hi])
    assert not np.any(got[:max(0, -offset)])  # what precedes the clip is the quiet line


def _tone(seconds: float) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    return (8000 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))) \
        .astype(np.int16).tobytes()


def _finals(s: EndpointingStream, pcm: bytes) -> list[Final]:
    return [e for f in frames(pcm + SILENCE * 100) for e in s.accept(f) if isinstance(e, Final)]


def test_short_answer_ends_after_the_questions_silence() -> None:
    """要的 (0.5 s) then a 0.4 s pause: at a 0.3 s end silence the reply has ended."""
    s = stream(RecordingDecoder(), trailing_silence_s=0.3)
    got = _finals(s, SILENCE * 25 + _tone(0.5) + SILENCE * 20 + _tone(0.5))
    assert len(got) == 1 and got[0].end_s < 1.2


def test_long_talk_is_not_cut_at_its_pauses() -> None:
    """A sentence that has run 1.5 s, a 0.5 s pause, more talk: one reply (cut at the pause, its
    pieces were each short enough to pass for an answer: …听见没有 → no)."""
    s = stream(RecordingDecoder(), trailing_silence_s=0.3)
    got = _finals(s, SILENCE * 25 + _tone(1.5) + SILENCE * 25 + _tone(0.8))
    assert len(got) == 1 and got[0].end_s > 2.9, got


def test_finish_mid_reply_gives_the_final_now() -> None:
    s = stream(RecordingDecoder("不需要"))
    for f in frames(read_8k(REPLIES / "buxuyao.wav")[:3200]):
        s.accept(f)
    [final] = s.finish()
    assert isinstance(final, Final) and final.match == "不需要"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        stream(RecordingDecoder(), no_input_s=0)


@pytest.mark.parametrize(("text", "want"), [
    ("不需要", "不需要"), ("需要", "需要"), ("我不需要了", "不需要"), ("嗯需要的", "需要"),
    ("", None), ("两个", None), ("不 需要", "不需要"),
])
def test_pick_match_prefers_the_longer_phrase(text, want) -> None:
    assert pick_match(text, ["需要", "不需要"]) == want


def test_upsampler_keeps_a_tone_across_frames() -> None:
    up = Upsampler2x()
    t = np.arange(8000) / 8000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = np.concatenate([up(x[i:i + 160]) for i in range(0, 8000, 160)])
    ref = np.sin(2 * np.pi * 440 * (np.arange(16000) - 15) / 16000)
    assert np.abs(y[1000:15000] - ref[1000:15000]).max() < 1e-3
