"""``vosk`` engine: a Kaldi model in grammar mode, listening only for the expected phrases.

Each phrase is split into words the model knows (Chinese runs are segmented by longest match
against the model's vocabulary); a phrase with a word the model cannot say is dropped with a
warning naming it. The model's unknown-word token (``[unk]`` or ``<UNK>``) is added to the
grammar so other speech does not get forced onto a phrase; words heard with low confidence
count as unknown too.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from callbot import defaults
from callbot.exceptions import MissingExtraError, SpeechError
from callbot.speech import models
from callbot.speech.stream import EndpointingStream, NoPhrases, pick_match

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u9fff]")
_CLEAN = re.compile(r"[,.!?;:'\"，。！？；：、…~～·\-—()（）]+")
_UNK_TOKENS = ("[unk]", "<UNK>", "<unk>")


def _import():
    try:
        import vosk
    except ImportError as exc:
        raise MissingExtraError("vosk", "speech") from exc
    vosk.SetLogLevel(-1)
    return vosk


def _join(words: list[str]) -> str:
    out = ""
    for w in words:
        if out and not (_CJK.match(out[-1]) and _CJK.match(w[0])):
            out += " "
        out += w
    return out


class VoskEngine:
    """A loaded Vosk model; each stream gets its own grammar recogniser."""

    name = "vosk"

    def __init__(self, model_dir: Path, *, min_word_conf: float = defaults.VOSK_MIN_WORD_CONF):
        self._vosk = _import()
        self.model_dir = model_dir
        self.model_name = models.model_label(model_dir)
        try:
            self._model = self._vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception
            raise SpeechError(f"无法加载 Vosk 模型 (cannot load model) {model_dir}: {exc}") from exc
        self.min_word_conf = min_word_conf
        self.unk = next((t for t in _UNK_TOKENS if self.knows(t)), None)
        self._warned: set[str] = set()

    @classmethod
    def load(cls, model: str | None = None, *, models_dir: Path | None = None, **options) -> VoskEngine:
        path = models.find_model(model or models.DEFAULT_MODEL["vosk"], kind="vosk",
                                 models_dir=models_dir)
        return cls(path, **options)

    def knows(self, word: str) -> bool:
        """Whether *word* is in the model's vocabulary."""
        return self._model.vosk_model_find_word(word) >= 0

    def words(self, phrase: str) -> list[str] | None:
        """*phrase* as vocabulary words, or None when the model cannot say it."""
        out: list[str] = []
        for token in _CLEAN.sub(" ", phrase).split():
            if self.knows(token):
                out.append(token)
                continue
            if not _CJK.search(token):
                return None
            i = 0
            while i < len(token):  # longest match against the vocabulary
                for j in range(len(token), i, -1):
                    if self.knows(token[i:j]):
                        out.append(token[i:j])
                        i = j
                        break
                else:
                    return None
        return out or None

    def grammar(self, expect: Sequence[str]) -> list[str]:
        """The grammar for *expect*: phrases the model can say, plus the unknown-word token."""
        said, unknown = [], []
        for phrase in dict.fromkeys(expect):
            words = self.words(phrase)
            (said.append(" ".join(words)) if words else unknown.append(phrase))
        new = [p for p in unknown if p not in self._warned]
        if new:
            self._warned.update(new)
            log.warning("Vosk 模型 %s 说不出这些短语 (out of vocabulary, ignored): %s",
                        self.model_name, ", ".join(new))
        if not said:
            raise SpeechError(f"模型 {self.model_name} 不认识任何期望的短语 (no expected phrase is in "
                              f"the vocabulary): {list(expect)}")
        return said + ([self.unk] if self.unk else [])

    def stream(self, expect: Sequence[str], *, no_input_s: float = defaults.ASR_NO_INPUT_S,
               max_reply_s: float = defaults.ASR_MAX_REPLY_S,
               trailing_silence_s: float = defaults.ASR_TRAILING_SILENCE_S) -> EndpointingStream:
        """A VAD-endpointed stream recognising only the *expect* phrases."""
        decoder = VoskDecoder(self, list(expect)) if expect else NoPhrases()
        return EndpointingStream(decoder, no_input_s=no_input_s,
                                 max_reply_s=max_reply_s, trailing_silence_s=trailing_silence_s)


class VoskDecoder:
    """One reply through a grammar-mode KaldiRecognizer at 8 kHz (Vosk resamples features)."""

    def __init__(self, engine: VoskEngine, expect: list[str]):
        self._engine = engine
        self.expect = expect
        grammar = engine.grammar(expect)
        self._rec = engine._vosk.KaldiRecognizer(engine._model, defaults.SAMPLE_RATE,
                                                 json.dumps(grammar, ensure_ascii=False))
        self._rec.SetWords(True)
        self._partial = ""
        self._segments: list[dict] = []

    def feed(self, pcm: bytes) -> str | None:
        if self._rec.AcceptWaveform(pcm):
            self._segments.append(json.loads(self._rec.Result()))
            partial = self._text(self._segments)[0]
        else:
            partial = json.loads(self._rec.PartialResult()).get("partial", "")
            partial = _join([w for w in partial.split() if w not in _UNK_TOKENS])
        if partial and partial != self._partial:
            self._partial = partial
            return partial
        return None

    def _text(self, segments: list[dict]) -> tuple[str, float]:
        words, confs = [], []
        for seg in segments:
            for w in seg.get("result", []):
                if w["word"] in _UNK_TOKENS or w.get("conf", 1.0) < self._engine.min_word_conf:
                    continue
                words.append(w["word"])
                confs.append(float(w.get("conf", 1.0)))
        return _join(words), (sum(confs) / len(confs) if confs else 0.0)

    def result(self) -> tuple[str, str | None, float]:
        self._segments.append(json.loads(self._rec.FinalResult()))
        text, conf = self._text(self._segments)
        match = pick_match(text, self.expect)
        return text, match, conf if match else 0.0
