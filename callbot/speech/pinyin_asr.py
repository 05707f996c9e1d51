"""``pinyin`` engine: free-form recognition of every reply, as toned pinyin.

The keyword-spotting model we ship (``kws-zh-wenetspeech-3.3M``, a streaming zipformer
transducer whose units are pinyin initials and toned finals) also decodes free speech when run as
an ordinary recogniser (``sherpa_onnx.OnlineRecognizer``, modified beam search). Each reply
becomes toned pinyin (``Final.pinyin``) and a Chinese rendering for staff (``Final.text``,
:mod:`callbot.speech.hanzi`); :func:`callbot.intents.classify` reads the pinyin, so phrasings no
template lists are understood. Measurements behind each choice are in docs/speech.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from callbot import defaults
from callbot import pinyin as py
from callbot.exceptions import MissingExtraError
from callbot.speech import models
from callbot.speech.audio import Upsampler2x, pcm_to_float
from callbot.speech.stream import EndpointingStream, make_vad

log = logging.getLogger(__name__)

_RATE = 16000
_GOES_ON = tuple(tuple(py.key(x)[:2] for x in py.from_string(w)) for w in (
    "hái xíng", "hái kě yǐ", "hái hǎo", "hái còu hé", "hái", "jiù shì", "dàn shì", "bú guò",
    "kě shì", "zhǐ shì", "nà gè", "jiù", "yǒu diǎn", "wǒ", "jiù shì yǒu diǎn"))
"""Endings (toneless) on which a reply goes on after a pause: a hedge (还行，| 就是腿疼), a turn
(但是, 不过), a filler (那个), a 我 or 有点 that names nothing yet. A reply stopping on one of them
is waited on for ``ASR_LONG_REPLY_SILENCE_S`` (not the question's shorter end silence)."""


def _import():
    try:
        import sherpa_onnx
    except ImportError as exc:
        raise MissingExtraError("sherpa-onnx", "speech") from exc
    return sherpa_onnx


class PinyinEngine:
    """A loaded transducer; streams share it (decoding is serialised by a lock)."""

    name = "pinyin"

    def __init__(self, model_dir: Path, *, num_threads: int = 1,
                 dither_dbfs: float = defaults.PINYIN_DITHER_DBFS,
                 tail_s: float = defaults.PINYIN_TAIL_S,
                 after_speech_s: float = defaults.PINYIN_AFTER_SPEECH_S, warm: bool = True):
        from callbot.speech.kws import _pick

        so = _import()
        self.model_dir = model_dir
        self.model_name = model_dir.name
        self._recognizer = so.OnlineRecognizer.from_transducer(
            tokens=str(model_dir / "tokens.txt"),
            encoder=str(_pick(model_dir, "encoder*.onnx")),
            decoder=str(_pick(model_dir, "decoder*.onnx")),
            joiner=str(_pick(model_dir, "joiner*.onnx")),
            num_threads=num_threads, sample_rate=_RATE, feature_dim=80,
            decoding_method="modified_beam_search", provider="cpu")
        self.dither = float(10 ** (dither_dbfs / 20))
        self.tail_s = tail_s
        self.after_speech_s = after_speech_s
        self._lock = threading.Lock()
        if not warm:  # (announcements: loaded at the first utterance, if one comes)
            return
        # load the lexicon and the character model now, not at the first reply of a call
        from callbot import intents
        from callbot.speech import hanzi

        intents.lexicon()
        hanzi.warm()

    @classmethod
    def load(cls, model: str | None = None, *, models_dir: Path | None = None,
             **options) -> PinyinEngine:
        path = models.find_model(model or models.DEFAULT_MODEL["pinyin"], kind="kws",
                                 models_dir=models_dir)
        return cls(path, **options)

    def stream(self, expect: Sequence[str] = (), *, no_input_s: float = defaults.ASR_NO_INPUT_S,
               max_reply_s: float = defaults.ASR_MAX_REPLY_S,
               trailing_silence_s: float = defaults.ASR_TRAILING_SILENCE_S) -> EndpointingStream:
        """A VAD-endpointed stream transcribing the reply; *expect* only fills ``match``."""
        return EndpointingStream(PinyinDecoder(self, list(expect)), no_input_s=no_input_s,
                                 max_reply_s=max_reply_s, trailing_silence_s=trailing_silence_s)

    def transcribe(self, pcm: bytes) -> tuple[list[py.Syllable], float]:
        """Syllables and mean token probability of a whole 8 kHz recording (no endpointing)."""
        d = PinyinDecoder(self, [])
        d.feed(pcm)
        return d.syllables()


class PinyinDecoder:
    """One reply: 8 kHz audio upsampled to 16 kHz and decoded as it arrives.

    Two habits of the model are handled here. Digital silence (a quiet SIP line, a padded file)
    makes it invent syllables, so a fixed, inaudible dither (``PINYIN_DITHER_DBFS``) is added to
    every sample. And at the end of a reply it may still emit a stray syllable out of the
    flushing silence: tokens stamped later than ``PINYIN_AFTER_SPEECH_S`` after the last voiced
    frame (webrtcvad, as the endpointing) are dropped.
    """

    def __init__(self, engine: PinyinEngine, expect: list[str]):
        self._engine = engine
        self.expect = expect
        self._stream = engine._recognizer.create_stream()
        self._up = Upsampler2x()
        self._samples = 0  # 16 kHz samples fed
        self._voiced_end = 0.0  # seconds into the decoded audio
        self._vad = _vad()
        self._rng = np.random.default_rng(20240101)
        self._tokens: tuple[str, ...] = ()
        self._finished = False
        self.unsure: frozenset[int] = frozenset()
        """Syllables (indices) heard with a probability below ``PINYIN_UNSURE``."""

    def feed(self, pcm: bytes) -> str | None:
        for i in range(0, len(pcm) - defaults.FRAME_BYTES + 1, defaults.FRAME_BYTES):
            if self._vad.is_speech(pcm[i:i + defaults.FRAME_BYTES], defaults.SAMPLE_RATE):
                self._voiced_end = (self._samples / 2 + i / 2 + defaults.FRAME_BYTES / 2) \
                    / defaults.SAMPLE_RATE
        if self._accept(self._up(pcm_to_float(pcm))):
            return self._partial()
        return None

    def _accept(self, x: np.ndarray) -> bool:
        """Feed 16 kHz samples; whether the network ran (a chunk of 0.32 s filled up)."""
        x = x + self._rng.normal(0.0, self._engine.dither, len(x)).astype(np.float32)
        rec = self._engine._recognizer
        decoded = False
        with self._engine._lock:
            self._stream.accept_waveform(_RATE, x)
            while rec.is_ready(self._stream):
                rec.decode_stream(self._stream)
                decoded = True
        self._samples += len(x)
        return decoded

    def continues(self) -> bool:
        """Whether the syllables heard so far end on one of :data:`_GOES_ON`, the last one
        possibly an initial whose final is not decoded yet (还行 sped up, 0.3 s into its pause, is
        still "hái x"): the stream then waits longer before it ends the reply. A lone initial is
        not enough (要 0.3 s after it is often still "y": a short answer is not kept waiting)."""
        syls = py.from_tokens(self._tokens)
        keys = tuple(py.key(s)[:2] for s in syls)
        if syls and not syls[-1][1]:  # an initial whose final is not decoded yet ("hái x")
            ini, keys = keys[-1][0], keys[:-1]
            if any(keys[-len(w) + 1:] == w[:-1] and w[-1][0] == ini
                   for w in _GOES_ON if len(w) >= 2 and len(keys) >= len(w) - 1):
                return True  # 还行 on its way ("hái x")
        return any(keys[-len(w):] == w for w in _GOES_ON if len(keys) >= len(w))

    def _partial(self) -> str | None:
        with self._engine._lock:
            tokens = tuple(self._engine._recognizer.get_result_all(self._stream).tokens)
        if tokens == self._tokens:
            return None
        self._tokens = tokens
        return py.to_string(py.from_tokens(tokens))

    def syllables(self) -> tuple[list[py.Syllable], float]:
        """Flush the decoder; (syllables heard, mean token probability)."""
        rec = self._engine._recognizer
        if not self._finished:
            self._finished = True
            # the reply's own quiet after its last voiced frame (up to ASR_DECODE_SILENCE_S of
            # it is decoded) counts toward the flush: only what it lacks of tail_s is fed
            quiet = max(0.0, self._samples / _RATE - self._voiced_end)
            tail = int(_RATE * max(0.0, self._engine.tail_s - quiet))
            if tail > 0:
                self._accept(np.zeros(tail, dtype=np.float32))
            with self._engine._lock:
                self._stream.input_finished()
                while rec.is_ready(self._stream):
                    rec.decode_stream(self._stream)
        with self._engine._lock:
            res = rec.get_result_all(self._stream)
        limit = self._voiced_end + self._engine.after_speech_s
        kept = [(t, p) for t, ts, p in zip(res.tokens, res.timestamps, _probs(res), strict=False)
                if ts <= limit]
        # a final stamped in time whose initial was stamped too late is still one syllable
        tokens = [t for t, _ in kept]
        probs = [p for _, p in kept]
        heard = py.from_tokens_with(tokens, probs)
        self.unsure = frozenset(i for i, (_s, p) in enumerate(heard)
                                if p < defaults.PINYIN_UNSURE)
        return [s for s, _p in heard], float(np.mean(probs)) if probs else 0.0

    def result(self) -> tuple[str, str | None, float, str]:
        from callbot import intents
        from callbot.speech import hanzi

        syls, prob = self.syllables()
        if not syls:
            return "", None, 0.0, ""
        match = intents.find_phrase(syls, self.expect) if self.expect else None
        return hanzi.render(syls, unsure=self.unsure), match, round(prob, 3), py.to_string(syls, self.unsure)


def _probs(res) -> list[float]:
    ys = list(getattr(res, "ys_probs", []) or [])
    if len(ys) == len(res.tokens):
        return [float(np.exp(v)) for v in ys]
    return [1.0] * len(res.tokens)


def _vad() -> Any:
    return make_vad(defaults.ASR_VAD_MODE)
