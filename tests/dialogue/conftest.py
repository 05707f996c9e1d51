"""Dialogue fixtures: the recorded reply clips, the models directory, the recogniser calls use
(``kws``), and ``talk`` — a built-in script driven by recorded replies through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.dialogue import DialogueEngine, Heard, Listen, Silence
from callbot.script import load_script
from tests.conftest import REPLIES, SHARED

FAST = "+40%"
"""Prompts spoken faster than the scripts' elderly-friendly rate: same dialogue, shorter test."""


def models_dir() -> Path | None:
    """../shared/models when it exists (else the engines' own model lookup)."""
    return SHARED / "models" if (SHARED / "models").is_dir() else None


def replies_dir() -> Path:
    """The recorded reply clips (callbot/data/replies, else ../shared/audio/replies); skip without."""
    for d in (REPLIES, SHARED / "audio" / "replies"):
        if (d / "transcripts.json").is_file():
            return d
    pytest.skip("no reply clips in callbot/data/replies or ../shared/audio/replies")


@pytest.fixture(scope="module")
def kws():  # type: ignore[no-untyped-def]
    """The recogniser calls use (the pinyin engine on the shipped KWS model), loaded once."""
    pytest.importorskip("sherpa_onnx")
    from callbot.exceptions import ModelNotFoundError
    from callbot.speech.pinyin_asr import PinyinEngine as KwsEngine  # the engine calls use

    try:
        return KwsEngine.load(models_dir=models_dir())
    except ModelNotFoundError as exc:
        pytest.skip(f"KWS model not available: {exc}")


def hear(kws, listen: Listen, clip: Path):  # type: ignore[no-untyped-def]
    """Stream a clip (then silence) through a KWS stream for *listen*: the dialogue event."""
    from callbot.speech.asr import Final, NoInput
    from callbot.speech.audio import frames, read_8k

    stream = kws.stream(listen.expect, no_input_s=listen.timeout_s)
    pcm = read_8k(clip) + b"\0" * 2 * 8000 * 2
    for frame in frames(pcm):
        for ev in stream.accept(frame):
            if isinstance(ev, Final):
                return Heard(ev.text, ev.confidence, ev.pinyin)
            if isinstance(ev, NoInput):
                return Silence()
    for ev in stream.finish():
        if isinstance(ev, Final):
            return Heard(ev.text, ev.confidence, ev.pinyin)
    return Silence()


def talk(kws, name: str, stems: list[str]) -> DialogueEngine:  # type: ignore[no-untyped-def]
    """Run built-in *name* with the recorded replies *stems* heard in turn; the engine after."""
    d = replies_dir()
    engine = DialogueEngine(load_script(name), {"姓名": "张阿姨"})
    actions = engine.start()
    for stem in stems:
        listen = next(a for a in reversed(actions) if isinstance(a, Listen))
        actions = engine.on(hear(kws, listen, d / f"{stem}.wav"))
        if engine.ended:
            break
    return engine
