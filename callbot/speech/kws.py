"""``kws`` engine: sherpa-onnx keyword spotting over Chinese pinyin units.

Each stream spots only the phrases its question expects (per-stream keywords). A phrase becomes
pinyin tokens with ``sherpa_onnx.text2token(..., tokens_type="ppinyin")``; common spoken variants
(不 bù/bú, 一 yī/yí/yì, 个 gè/ge) are added. When one expected phrase starts with another
(需要 / 需要帮助), the spotter fires on the shorter one first: that hit does not reset the search,
the rest of the longer one (帮助) is spotted as a keyword of its own, and the pieces are joined
before matching. See docs/speech.md for the measurements behind each choice.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from callbot import defaults
from callbot.exceptions import MissingExtraError, ModelNotFoundError, SpeechError
from callbot.speech import models
from callbot.speech.audio import Upsampler2x, pcm_to_float
from callbot.speech.stream import EndpointingStream, NoPhrases, pick_match

log = logging.getLogger(__name__)

_VARIANTS = {"不": ("ù", "ú"), "一": ("ī", "í", "ì"), "个": ("è", "e")}
_MAX_VARIANTS = 8
_SHIFT = 5120  # 0.32 s at 16 kHz: the encoder's chunk; alignments are spread over it
_CLEAN = re.compile(r"[\s,.!?;:'\"，。！？；：、…~～·\-—()（）]+")


def _import():
    try:
        import sherpa_onnx
    except ImportError as exc:
        raise MissingExtraError("sherpa-onnx", "speech") from exc
    return sherpa_onnx


def _pick(model_dir: Path, pattern: str) -> Path:
    found = sorted(model_dir.glob(pattern))
    int8 = [p for p in found if ".int8." in p.name]
    if not found:
        raise ModelNotFoundError(f"{model_dir}: no {pattern} in the KWS model directory")
    return (int8 or found)[0]


class KwsEngine:
    """A loaded sherpa-onnx KeywordSpotter; streams share it (decoding is serialised by a lock)."""

    name = "kws"

    def __init__(self, model_dir: Path, *, threshold: float = defaults.KWS_THRESHOLD,
                 score: float = defaults.KWS_SCORE,
                 short_threshold: float = defaults.KWS_SHORT_THRESHOLD,
                 alignments: int = defaults.KWS_ALIGNMENTS, tail_s: float = defaults.KWS_TAIL_S,
                 research_max_s: float = defaults.KWS_RESEARCH_MAX_S,
                 short_max_s: float = defaults.KWS_SHORT_MAX_S,
                 num_threads: int = 1):
        so = _import()
        self.model_dir = model_dir
        self.model_name = model_dir.name
        self._so = so
        self._tokens_file = str(model_dir / "tokens.txt")
        self._tmp = tempfile.TemporaryDirectory(prefix="callbot-kws-")
        empty = Path(self._tmp.name) / "keywords.txt"
        empty.write_text("", encoding="utf-8")  # every stream brings its own keywords
        self._spotter = so.KeywordSpotter(
            tokens=self._tokens_file,
            encoder=str(_pick(model_dir, "encoder*.onnx")),
            decoder=str(_pick(model_dir, "decoder*.onnx")),
            joiner=str(_pick(model_dir, "joiner*.onnx")),
            keywords_file=str(empty),
            num_threads=num_threads,
            keywords_threshold=threshold,
            keywords_score=score,
            num_trailing_blanks=1,
            provider="cpu",
        )
        self.short_threshold = short_threshold
        self.alignments = alignments
        self.tail_s = tail_s
        self.research_max_s = research_max_s
        self.short_max_s = short_max_s
        self._lock = threading.Lock()
        self._token_cache: dict[str, list[str] | None] = {}
        self._keywords_cache: dict[tuple[str, ...], tuple[str, dict[str, str]]] = {}
        self._warned: set[str] = set()

    @classmethod
    def load(cls, model: str | None = None, *, models_dir: Path | None = None, **options) -> KwsEngine:
        path = models.find_model(model or models.DEFAULT_MODEL["kws"], kind="kws",
                                 models_dir=models_dir)
        return cls(path, **options)

    # -- keywords --

    def tokens(self, phrase: str) -> list[str] | None:
        """Pinyin tokens of *phrase* (None when the model cannot spell it)."""
        if phrase not in self._token_cache:
            clean = _CLEAN.sub("", phrase)
            toks: list[str] | None = None
            if clean:
                out = self._so.text2token([clean], tokens=self._tokens_file, tokens_type="ppinyin")
                toks = list(out[0]) if out else None
            self._token_cache[phrase] = toks
        return self._token_cache[phrase]

    def _char_groups(self, phrase: str, toks: list[str]) -> list[tuple[str, list[str]]] | None:
        """Split *toks* into per-character groups (so variants and suffixes can be cut)."""
        groups, i = [], 0
        for ch in _CLEAN.sub("", phrase):
            single = self._so.text2token([ch], tokens=self._tokens_file, tokens_type="ppinyin")
            n = len(single[0]) if single else 0
            if n == 0 or i + n > len(toks):
                return None
            groups.append((ch, toks[i:i + n]))
            i += n
        return groups if i == len(toks) else None

    def keywords(self, expect: Sequence[str]) -> tuple[str, dict[str, str]]:
        """sherpa-onnx keyword spec for *expect* and the label → text map of what it can report."""
        key = tuple(expect)
        if key not in self._keywords_cache:
            self._keywords_cache[key] = self._keywords(key)
        return self._keywords_cache[key]

    def _keywords(self, expect: Sequence[str]) -> tuple[str, dict[str, str]]:
        lines: list[str] = []
        labels: dict[str, str] = {}
        groups: dict[str, list[tuple[str, list[str]]]] = {}
        unknown = []
        for phrase in dict.fromkeys(expect):
            toks = self.tokens(phrase)
            if not toks:
                unknown.append(phrase)
                continue
            label = _CLEAN.sub("", phrase)
            labels[label] = label
            g = self._char_groups(phrase, toks)
            if g is None:
                lines.append(f"{' '.join(toks)} @{label}")
                continue
            groups[label] = g
            # one syllable (要, 好, 是) is easily heard in unrelated speech: ask for more certainty
            extra = f" #{self.short_threshold}" if len(g) == 1 else ""
            lines += [f"{' '.join(v)}{extra} @{label}" for v in _variants(g)]
        # the tail of a longer phrase that starts with a shorter expected one (需要 → 需要帮助)
        for long, g in groups.items():
            for short in groups:
                if short != long and long.startswith(short) and len(long) - len(short) >= 2:
                    rest = g[len(short):]
                    label = long[len(short):]
                    labels.setdefault(label, label)
                    lines += [f"{' '.join(v)} @{label}" for v in _variants(rest)]
        new = [p for p in unknown if p not in self._warned]
        if new:
            self._warned.update(new)
            log.warning("KWS 模型 %s 无法识别这些短语 (cannot spell, ignored): %s",
                        self.model_name, ", ".join(new))
        if not lines:
            raise SpeechError(f"没有可识别的短语 (none of the expected phrases can be spotted): {list(expect)}")
        return "/".join(dict.fromkeys(lines)), labels

    # -- streams --

    def stream(self, expect: Sequence[str], *, no_input_s: float = defaults.ASR_NO_INPUT_S,
               max_reply_s: float = defaults.ASR_MAX_REPLY_S,
               trailing_silence_s: float = defaults.ASR_TRAILING_SILENCE_S) -> EndpointingStream:
        """A VAD-endpointed stream spotting the *expect* phrases."""
        decoder = KwsDecoder(self, list(expect)) if expect else NoPhrases()
        return EndpointingStream(decoder, no_input_s=no_input_s,
                                 max_reply_s=max_reply_s, trailing_silence_s=trailing_silence_s)


def _variants(groups: list[tuple[str, list[str]]]) -> list[list[str]]:
    options = []
    for ch, toks in groups:
        alts = [toks]
        if ch in _VARIANTS and len(toks) == 2:
            alts += [[toks[0], f] for f in _VARIANTS[ch] if f != toks[1]]
        options.append(alts)
    out = []
    for combo in itertools.islice(itertools.product(*options), _MAX_VARIANTS):
        out.append([t for part in combo for t in part])
    return out


class KwsDecoder:
    """One reply's keyword search: 8 kHz audio upsampled to 16 kHz, hits joined in order.

    The spotter decodes in chunks of ~0.32 s and misses some short words depending on where they
    fall in a chunk. So when the live search ends without a match, or with a one-syllable match
    that ends a longer expected phrase (要 of 不需要), the reply (kept in memory) is searched
    again shifted by fractions of a chunk (``alignments`` in all); the longest match wins.
    Other replies that match at once cost one search.
    """

    def __init__(self, engine: KwsEngine, expect: list[str]):
        self._engine = engine
        self.expect = expect
        self._spec, self._labels = engine.keywords(expect)
        # after a hit the spotter is reset, which would lose the rest of a longer phrase that
        # starts with it (要 → 要两盒): those hits keep the search going
        texts = set(self._labels.values())
        self._prefixes = {a for a in texts if any(b != a and b.startswith(a) for b in texts)}
        self._stream = engine._spotter.create_stream(self._spec)
        self._hits: list[str] = []
        self._audio: list[np.ndarray] = []
        self._up = Upsampler2x()

    def feed(self, pcm: bytes) -> str | None:
        x = self._up(pcm_to_float(pcm))
        self._audio.append(x)
        before = len(self._hits)
        self._decode(self._stream, self._hits, x)
        return "".join(self._hits) if len(self._hits) != before else None

    def _decode(self, s, hits: list[str], samples: np.ndarray) -> None:
        spotter = self._engine._spotter
        with self._engine._lock:  # the model is exported for batch size 1: one stream at a time
            s.accept_waveform(16000, samples)
            while spotter.is_ready(s):
                spotter.decode_stream(s)
                hit = spotter.get_result(s)
                if not hit:
                    continue
                text = self._labels.get(hit)
                if text not in self._prefixes:
                    spotter.reset_stream(s)
                if text is not None and (not hits or hits[-1] != text):
                    hits.append(text)

    def _heard(self, hits: list[str], heard_s: float) -> str:
        """What the hits say; one-syllable hits are dropped from a long reply (KWS_SHORT_MAX_S)."""
        if heard_s > self._engine.short_max_s:
            hits = [h for h in hits if len(h) > 1]
        return "".join(hits)

    def result(self) -> tuple[str, str | None, float]:
        tail = np.zeros(int(16000 * self._engine.tail_s), dtype=np.float32)
        self._decode(self._stream, self._hits, tail)
        heard_s = sum(len(a) for a in self._audio) / 16000
        text = self._heard(self._hits, heard_s)
        match = pick_match(text, self.expect)
        n = max(1, self._engine.alignments)
        # a long reply that matched nothing is other talk, not a missed short word; and the
        # re-search must stay quick (it delays the next prompt)
        # a one-syllable match that ends a longer expected phrase (要 in 不需要) may be all the
        # spotter caught of it at this alignment: look again as for a miss
        unsure = match is not None and len(match) == 1 and any(
            len(p) > 1 and p.endswith(match) for p in self.expect)
        if (match is None or unsure) and self._audio and heard_s <= self._engine.research_max_s:
            audio = np.concatenate(self._audio)
            for i in range(1, n):
                hits: list[str] = []
                lead = np.zeros(i * _SHIFT // n, dtype=np.float32)
                s = self._engine._spotter.create_stream(self._spec)
                self._decode(s, hits, np.concatenate([lead, audio, tail]))
                heard = self._heard(hits, heard_s)
                again = pick_match(heard, self.expect)
                if again is not None and (match is None or len(again) > len(match)):
                    text, match = heard, again
        # a keyword spotter has no graded score: a detection passed the threshold, or nothing did
        return text, match, 1.0 if match else 0.0
