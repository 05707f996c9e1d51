"""Chinese text and recogniser output as toned pinyin syllables, and how alike two syllables sound.

A syllable is ``(initial, final)`` in the recogniser's own units: the initial as pypinyin writes it
without strict rules (``y``/``w`` count as initials, ``""`` for none) and the final with its tone
mark (``"ào"``; a toneless final is the neutral tone). Both :func:`from_text` (typed text, lexicon
phrases) and :func:`from_tokens` (the transducer's output) give this form, so the intent
classifier compares like with like. Pure functions; pypinyin is the only dependency.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

Syllable = tuple[str, str]

INITIALS = frozenset("b p m f d t n l g k h j q x zh ch sh r z c s y w".split())
"""Initials as the model's tokens spell them (``y``, ``w`` included)."""

_TONE_MARKS = {"\u0304": 1, "\u0301": 2, "\u030c": 3, "\u0300": 4}
_HAN = re.compile(r"[\u3400-\u9fff]")
_DIGITS = "零一二三四五六七八九"


def split_tone(final: str) -> tuple[str, int]:
    """``"ào"`` → ``("ao", 4)``; ``"üè"`` → ``("ve", 4)``; a toneless final is tone 5."""
    tone = 5
    out = []
    for ch in unicodedata.normalize("NFD", final):
        if ch in _TONE_MARKS:
            tone = _TONE_MARKS[ch]
        elif ch == "\u0308":  # the diaeresis of ü
            out.append(":")
        else:
            out.append(ch)
    base = "".join(out).replace("u:", "v").replace("ü", "v")
    return base, tone


@functools.lru_cache(maxsize=4096)
def key(syl: Syllable) -> tuple[str, str, int]:
    """(initial, toneless final, tone), with ü written v and j/q/x/y + u read as ü."""
    ini, fin = syl
    base, tone = split_tone(fin)
    if ini in ("j", "q", "x", "y") and base.startswith("u"):
        base = "v" + base[1:]
    if base == "m" or base == "n" or base == "ng":  # 嗯 ń / ň
        base = "n"
    return ini, base, tone


UNSURE = "?"
"""Written after a syllable the recogniser heard with little certainty (``"yòng? mìng"``)."""


def to_string(syls: Iterable[Syllable], unsure: Iterable[int] = ()) -> str:
    """Syllables as toned pinyin separated by spaces: ``"xū yào"``; the syllables at the indices
    *unsure* are marked with :data:`UNSURE`."""
    marked = set(unsure)
    return " ".join(ini + fin + (UNSURE if i in marked else "")
                    for i, (ini, fin) in enumerate(syls))


def unsure_of(text: str) -> frozenset[int]:
    """Indices of the syllables :func:`to_string` marked as unsure in *text*."""
    return frozenset(i for i, w in enumerate(text.split()) if w.endswith(UNSURE))


def from_string(text: str) -> list[Syllable]:
    """Parse :func:`to_string`'s form (one syllable per space-separated word) into syllables
    (unsure marks dropped: :func:`unsure_of` reads them)."""
    out: list[Syllable] = []
    for word in text.split():
        word = word.rstrip(UNSURE)
        if not word:
            continue
        ini = next((word[:n] for n in (2, 1) if word[:n] in INITIALS and len(word) > n), "")
        out.append((ini, word[len(ini):]) if ini or word not in INITIALS else (word, ""))
    return out


def from_tokens(tokens: Sequence[str]) -> list[Syllable]:
    """The transducer's tokens (initials and toned finals) grouped into syllables; a dangling
    initial becomes a syllable of its own, Latin letters and symbols are dropped."""
    return [s for s, _p in from_tokens_with(tokens, [1.0] * len(tokens))]


def from_tokens_with(tokens: Sequence[str], probs: Sequence[float]) -> list[tuple[Syllable, float]]:
    """:func:`from_tokens` with each syllable's probability: the geometric mean of its tokens'."""
    out: list[tuple[Syllable, float]] = []
    pending, p_pending = "", 1.0
    for tok, p in zip(tokens, probs, strict=True):
        tok = tok.strip()
        if not tok or tok.startswith("<") or tok.startswith("#"):
            continue
        if tok in INITIALS:
            if pending:
                out.append(((pending, ""), p_pending))
            pending, p_pending = tok, p
        elif tok.isascii() and tok.isupper():  # English letters the model knows: not Chinese
            continue
        else:
            out.append(((pending, tok), (p_pending * p) ** 0.5 if pending else p))
            pending = ""
    if pending:
        out.append(((pending, ""), p_pending))
    return out


def _number_words(text: str) -> str:
    """Arabic numbers as Chinese numerals (``5盒`` → ``五盒``, ``12`` → ``十二``)."""

    def words(m: re.Match[str]) -> str:
        n = int(m.group(0))
        if n < 10:
            return _DIGITS[n]
        if n < 100:
            tens, ones = divmod(n, 10)
            return ("" if tens == 1 else _DIGITS[tens]) + "十" + (_DIGITS[ones] if ones else "")
        return "".join(_DIGITS[int(d)] for d in m.group(0))

    return re.sub(r"\d+", words, text)


_MEMO: dict[str, tuple[tuple[Syllable, str], ...]] = {}
"""Readings known without pypinyin (``load_memo``): pypinyin's dictionaries take ~57 MB per
process, so the host's speech process writes the readings of the lexicon and a line process
loads them instead of pypinyin; any other text still goes through pypinyin."""
_MEMO_MAX = 50_000
_SEP = "\x1f"
"""Between the fields of a memo's reading (the lexicon's text never holds it)."""


def _text_syllables(text: str) -> tuple[tuple[Syllable, str], ...]:
    got = _MEMO.get(text)
    if got is not None:
        return got
    got = _convert(text)
    if len(_MEMO) < _MEMO_MAX:
        _MEMO[text] = got
    return got


def save_memo(path: str | os.PathLike[str]) -> None:
    """Write the readings converted so far (atomically) for :func:`load_memo`."""
    import json

    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    # one string per text ("initial final char" joined by _SEP): parsing nested lists made
    # ~100,000 short-lived objects in every line process, whose memory stayed with it
    data = {"pypinyin": _pypinyin_version(), "format": 2,
            "readings": {t: _SEP.join(f"{s[0]}{_SEP}{s[1]}{_SEP}{c}" for s, c in v)
                         for t, v in _MEMO.items()}}
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, dst)


def load_memo(path: str | os.PathLike[str]) -> int:
    """Load readings written by :func:`save_memo` (same pypinyin version); how many."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if data.get("pypinyin") != _pypinyin_version() or data.get("format") != 2:
        return 0  # an older memo: the speech process writes a new one when it starts
    # one object per distinct (syllable, character) pair: the lexicon's ~33,000 pairs are a few
    # thousand distinct ones, and every line process holds them all
    shared: dict[tuple[str, str, str], tuple[Syllable, str]] = {}
    readings = data.get("readings", {})
    for text, packed in readings.items():
        if text in _MEMO:
            continue
        f = packed.split(_SEP) if packed else []
        _MEMO[text] = tuple(shared.setdefault((f[i], f[i + 1], f[i + 2]),
                                              ((f[i], f[i + 1]), f[i + 2]))
                            for i in range(0, len(f) - 2, 3))
    return len(readings)


def _pypinyin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pypinyin")
    except PackageNotFoundError:
        return ""


@functools.lru_cache(maxsize=8192)
def _convert(text: str) -> tuple[tuple[Syllable, str], ...]:
    from pypinyin import Style, pinyin

    chars = [c for c in _number_words(unicodedata.normalize("NFKC", text)) if _HAN.match(c)]
    if not chars:
        return ()
    joined = "".join(chars)
    inis = pinyin(joined, style=Style.INITIALS, strict=False, errors="ignore")
    fins = pinyin(joined, style=Style.FINALS_TONE, strict=False, errors="ignore")
    out = []
    for ch, i, f in zip(chars, inis, fins, strict=True):
        fin = f[0]
        if i[0] == "" and fin in ("ń", "ň", "ǹ", "n", "ḿ", "m"):
            fin = "ēn"  # 嗯: the model writes it as a nasal final
        out.append(((i[0], fin), ch))
    return tuple(out)


def from_text(text: str) -> list[Syllable]:
    """Syllables of the Han characters in *text* (numbers read out, everything else ignored)."""
    return [s for s, _ in _text_syllables(text)]


def pinyin_of(text: str) -> str:
    """:func:`to_string` of :func:`from_text`: the toned pinyin shown beside a typed or
    recognised text that came without its own."""
    return to_string(from_text(text))


def with_chars(text: str) -> list[tuple[Syllable, str]]:
    """(syllable, character) for each Han character of *text* (numbers read out)."""
    return list(_text_syllables(text))


# --- how alike two syllables sound -----------------------------------------------------------

_INITIAL_NEAR = [
    ({"z", "zh"}, 0.3), ({"c", "ch"}, 0.3), ({"s", "sh"}, 0.3), ({"n", "l"}, 0.3),
    ({"f", "h"}, 0.4), ({"z", "s"}, 0.5), ({"zh", "sh"}, 0.5), ({"z", "c"}, 0.5),
    ({"zh", "ch"}, 0.5), ({"d", "t"}, 0.5), ({"b", "p"}, 0.5), ({"g", "k"}, 0.5),
    ({"j", "q"}, 0.5), ({"j", "x"}, 0.5), ({"q", "x"}, 0.5), ({"t", "p"}, 0.6),
    ({"", "y"}, 0.3), ({"", "w"}, 0.3), ({"m", "n"}, 0.6), ({"b", "m"}, 0.6),
    ({"h", "k"}, 0.6), ({"r", "l"}, 0.5), ({"r", "y"}, 0.6), ({"g", "d"}, 0.6),
    # on a noisy line the hiss of an affricate drowns and the stop before it is what is heard
    # (暂时不缺 fast + noise → "dàn shí bù tiān"): z/zh/j as d, c/ch/q as t
    ({"z", "d"}, 0.5), ({"zh", "d"}, 0.6), ({"j", "d"}, 0.6),
    ({"c", "t"}, 0.5), ({"ch", "t"}, 0.6), ({"q", "t"}, 0.6),
]
_FINAL_NEAR = [
    ({"en", "eng"}, 0.3), ({"e", "eng"}, 0.4), ({"in", "ing"}, 0.3), ({"an", "ang"}, 0.4), ({"ian", "iang"}, 0.4),
    ({"uan", "uang"}, 0.4), ({"o", "uo"}, 0.2), ({"e", "o"}, 0.4), ({"e", "uo"}, 0.5),
    ({"e", "ei"}, 0.5), ({"ei", "ui"}, 0.4), ({"i", "ie"}, 0.5), ({"u", "ou"}, 0.5),
    ({"ong", "eng"}, 0.5), ({"v", "u"}, 0.4), ({"v", "i"}, 0.5), ({"ve", "ie"}, 0.5),
    ({"ing", "ian"}, 0.6), ({"an", "ian"}, 0.6), ({"ao", "ou"}, 0.5), ({"a", "e"}, 0.6),
    ({"i", "e"}, 0.6), ({"u", "o"}, 0.5), ({"ai", "ei"}, 0.5), ({"un", "en"}, 0.5),
    ({"iu", "ou"}, 0.5), ({"u", "e"}, 0.6), ({"er", "e"}, 0.5), ({"n", "en"}, 0.3),
]


def _table(pairs: list[tuple[set[str], float]]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for group, cost in pairs:
        a, b = sorted(group)
        out[(a, b)] = out[(b, a)] = min(cost, out.get((a, b), 1.0))
    return out


_INI_COST = _table(_INITIAL_NEAR)
_FIN_COST = _table(_FINAL_NEAR)
TONE_COST = 0.15
"""Cost of a tone heard differently (tone sandhi and the model's tone errors are common)."""


@functools.lru_cache(maxsize=65536)
def distance(a: Syllable, b: Syllable) -> float:
    """0 (the same) … 1 (nothing alike): initial and final weighed equally, tones a little."""
    ia, fa, ta = key(a)
    ib, fb, tb = key(b)
    ci = 0.0 if ia == ib else _INI_COST.get((ia, ib), 1.0)
    cf = 0.0 if fa == fb else _FIN_COST.get((fa, fb), 1.0)
    if not fa or not fb:  # a dangling initial: only half a syllable heard
        cf = 0.6 if fa != fb else 0.0
    ct = 0.0 if ta == tb or 5 in (ta, tb) else TONE_COST
    return min(1.0, 0.5 * ci + 0.5 * cf + ct)


class SoundTable:
    """:func:`distance` from each of a fixed set of *syllables* (a lexicon's) to any heard ones,
    for all pairs at once: the same sums, in the same order, as :func:`distance` makes for one
    pair, so every value is equal to it bit for bit (the lexicon's search compares costs exactly)."""

    def __init__(self, syllables: Sequence[Syllable]):
        import numpy as np

        keys = [key(s) for s in syllables]
        inis = sorted({k[0] for k in keys} | INITIALS | {""} | {i for p in _INI_COST for i in p})
        fins = sorted({k[1] for k in keys} | {""} | {f for p in _FIN_COST for f in p})
        self._ini = {x: n for n, x in enumerate(inis)}  # any other initial: id len(inis)
        self._fin = {x: n for n, x in enumerate(fins)}  # any other (non-empty) final: id len(fins)

        def ini_cost(a: str | None, b: str) -> float:
            return 0.0 if a == b else _INI_COST.get((a, b), 1.0) if a is not None else 1.0

        def fin_cost(a: str | None, b: str) -> float:
            if a is None:  # a final no syllable of the set has and no near pair names
                return 1.0 if b else 0.6
            if not a or not b:
                return 0.6 if a != b else 0.0
            return 0.0 if a == b else _FIN_COST.get((a, b), 1.0)

        ini_of = [*inis, None]
        fin_of = [*fins, None]
        # per syllable of the set: its initial's, final's and tone's cost against each heard one
        self._ini_cost = np.array([[ini_cost(h, k[0]) for h in ini_of] for k in keys])
        self._fin_cost = np.array([[fin_cost(h, k[1]) for h in fin_of] for k in keys])
        self._tone_cost = np.array([[0.0 if t == k[2] or 5 in (t, k[2]) else TONE_COST
                                     for t in range(6)] for k in keys])
        self.size = len(keys)

    def distances(self, heard: Sequence[Syllable]):  # -> numpy.ndarray
        """``out[s, j] == distance(syllables[s], heard[j])`` (float64, shape set × heard)."""
        import numpy as np

        keys = [key(h) for h in heard]
        ini = [self._ini.get(k[0], len(self._ini)) for k in keys]
        fin = [self._fin.get(k[1], len(self._fin)) for k in keys]
        tone = [k[2] for k in keys]
        # distance: min(1.0, 0.5 * ci + 0.5 * cf + ct), with ci, cf and ct as it finds them
        out = 0.5 * self._ini_cost[:, ini] + 0.5 * self._fin_cost[:, fin] + self._tone_cost[:, tone]
        return np.minimum(out, 1.0)
