"""Streaming speech recognition for one reply at a time.

Feed 20 ms frames of 8 kHz 16-bit mono PCM to a stream; get events back::

    engine = load_asr(settings)                  # or load_asr("kws") / load_asr("vosk", model=...)
    stream = engine.stream(["需要", "不需要"], no_input_s=5)
    for frame in frames:
        for event in stream.accept(frame):
            ...  # SpeechStarted (barge-in), Partial, Final, NoInput

Endpointing (webrtcvad) is shared by every engine, and gates decoding: audio reaches the
decoder only from just before speech starts until the reply ends, so an idle line costs a VAD call
per frame. A stream ends with exactly one ``Final`` or ``NoInput``; later frames are ignored.
"""

from __future__ import annotations

from callbot import defaults
from callbot.exceptions import SpeechError
from callbot.speech.stream import (
    FRAME_BYTES,
    FRAME_S,
    AsrEngine,
    AsrStream,
    Decoder,
    EndpointingStream,
    Final,
    NoInput,
    NoPhrases,
    Partial,
    SpeechStarted,
    pick_match,
)

__all__ = [
    "FRAME_BYTES",
    "FRAME_S",
    "SpeechStarted",
    "Partial",
    "Final",
    "NoInput",
    "AsrStream",
    "AsrEngine",
    "Decoder",
    "pick_match",
    "EndpointingStream",
    "NoPhrases",
    "ENGINES",
    "load_asr",
]

# --- factory ------------------------------------------------------------------------------------

ENGINES = ("pinyin", "kws", "vosk")


def load_asr(settings_or_name=None, *, model: str | None = None, **options) -> AsrEngine:
    """Load an ASR engine by name (``pinyin``/``kws``/``vosk``) or from Settings (``asr_engine``, models dir).

    *model* is a model name (see ``callbot models list``) or a model directory; the engine's default
    model otherwise. Raises ModelNotFoundError naming ``callbot models download NAME``.
    """
    models_dir = None
    if settings_or_name is None or isinstance(settings_or_name, str):
        name = settings_or_name or defaults.ASR_ENGINE
    else:
        name = settings_or_name.asr_engine
        models_dir = settings_or_name.models_dir
        model = model or settings_or_name.extra.get("asr_model")
    if name == "pinyin":
        from callbot.speech.pinyin_asr import PinyinEngine

        return PinyinEngine.load(model, models_dir=models_dir, **options)
    if name == "kws":
        from callbot.speech.kws import KwsEngine

        return KwsEngine.load(model, models_dir=models_dir, **options)
    if name == "vosk":
        from callbot.speech.vosk_asr import VoskEngine

        return VoskEngine.load(model, models_dir=models_dir, **options)
    raise SpeechError(f"未知的识别引擎 {name!r} (unknown ASR engine); use one of {', '.join(ENGINES)}")
