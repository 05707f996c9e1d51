"""Toned pinyin → Chinese characters for staff (``Final.text``); the pinyin is kept beside it.

Two sources, best first: the phrases of the intent lexicon found in the reply (what the robot
understood is written as the lexicon writes it: 站不起来, 两盒), then, for the rest, the
Pinyin2Hanzi input-method model (an HMM over characters with a Viterbi search, toneless pinyin
in). A syllable it cannot place stays as pinyin. The rendering is a reading aid: decisions are
made from the pinyin.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence

from callbot import intents
from callbot import pinyin as py
from callbot.exceptions import MissingExtraError

_lock = threading.Lock()
_CLOSE = 0.5  # of a phrase's allowed difference: still written as the lexicon's phrase


_STATES = 12  # characters kept per syllable (the most frequent of those with its reading)
_FLOOR = math.log(1e-12)


class _Ime:
    """Pinyin2Hanzi's HMM tables (character start, emission and transition probabilities) with
    our own log-space Viterbi: candidates are the characters whose reading has the heard tone."""

    def __init__(self) -> None:
        try:
            from Pinyin2Hanzi import DefaultHmmParams
        except ImportError as exc:
            raise MissingExtraError("Pinyin2Hanzi", "speech") from exc
        p = DefaultHmmParams()
        self.py2hz: dict[str, str] = p.py2hz_dict
        self.start: dict[str, float] = p.start_dict["data"]
        self.start_default = float(p.start_dict["default"])
        self.trans: dict[str, dict[str, float]] = p.transition_dict["data"]
        self.trans_default = float(p.transition_dict["default"])

    def knows(self, key: str) -> bool:
        return key in self.py2hz

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per process
    def states(self, key: str, tone: int) -> tuple[str, ...]:
        chars = self.py2hz.get(key, "")
        toned = [c for c in chars if tone == 5 or tone in _tones(c)] or list(chars)
        # common characters (GB 2312 level 1) before rare ones, then by frequency
        toned.sort(key=lambda c: (not _common(c), -self.start.get(c, self.start_default)))
        return tuple(toned[:_STATES])

    def _log_start(self, c: str) -> float:
        return math.log(max(self.start.get(c, self.start_default), 1e-12))

    def _log_trans(self, a: str, b: str) -> float:
        row = self.trans.get(a)
        if row is None:
            return math.log(max(self.trans_default, 1e-12))
        v = row.get(b, row.get("default", self.trans_default))
        return math.log(max(float(v), 1e-12))

    def best(self, obs: Sequence[tuple[str, int]]) -> str:
        """The likeliest characters for (toneless key, tone) observations."""
        layer = {c: (self._log_start(c), c) for c in self.states(*obs[0])}
        for o in obs[1:]:
            nxt = {}
            for c in self.states(*o):
                nxt[c] = max(((score + self._log_trans(p, c), path + c)
                              for p, (score, path) in layer.items()), key=lambda t: t[0])
            layer = nxt
        return max(layer.values(), key=lambda t: t[0])[1]


@functools.lru_cache(maxsize=8192)
def _tones(ch: str) -> frozenset[int]:
    from pypinyin import Style, pinyin

    readings = pinyin(ch, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True)[0]
    return frozenset(int(r[-1]) for r in readings if r and r[-1].isdigit())


@functools.lru_cache(maxsize=16384)
def _common(ch: str) -> bool:
    """One of the 3,755 most common characters (GB 2312 level 1)."""
    try:
        b = ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(b) == 2 and 0xB0 <= b[0] <= 0xD7


@functools.lru_cache(maxsize=1)
def _ime() -> _Ime:
    return _Ime()


def warm() -> None:
    """Load the character model (about half a second) before the first reply needs it."""
    _ime()
    render(py.from_text("您好"))


def _ime_key(s: py.Syllable) -> tuple[str, int]:
    ini, fin, tone = py.key(s)
    if fin.startswith("v") and ini in ("j", "q", "x", "y"):
        fin = "u" + fin[1:] if fin in ("v", "van", "vn") else fin  # ju, quan, xun; jve, yve
    if ini == "" and fin == "n":
        return "en", tone
    return ini + fin, tone


def _guess(syls: Sequence[py.Syllable]) -> str:
    """Characters for a run of syllables no lexicon phrase explains."""
    if not syls:
        return ""
    ime = _ime()
    obs = [_ime_key(s) for s in syls]
    out = []
    i = 0
    while i < len(obs):  # split at syllables the model does not know (left as pinyin)
        if not ime.knows(obs[i][0]):
            out.append(syls[i][0] + syls[i][1])
            i += 1
            continue
        j = i
        while j < len(obs) and ime.knows(obs[j][0]):
            j += 1
        with _lock:
            out.append(ime.best(obs[i:j]))
        i = j
    return "".join(out)


def _cost(e: intents.Entry, syls: Sequence[py.Syllable], start: int,
          unsure: frozenset[int]) -> float:
    """How far *e* is from the syllables at *start*, one for one; a syllable the recogniser
    marked unsure (``Final.pinyin``'s ``?``) counts half: it doubted that syllable itself."""
    return sum(py.distance(p, syls[start + k]) * (0.5 if start + k in unsure else 1.0)
               for k, p in enumerate(e.syllables))


def _written(m: intents.Match, syls: Sequence[py.Syllable], unsure: frozenset[int]) -> bool:
    """Is *m* heard closely enough to be written as the lexicon writes it?"""
    n = m.end - m.start
    if len(m.entry.chars) != n or len(m.entry.syllables) != n:
        return False
    limit = _CLOSE * intents.max_cost(n)
    return m.cost <= limit or _cost(m.entry, syls, m.start, unsure) <= limit


@functools.lru_cache(maxsize=1)
def _limits(lex: intents.Lexicon) -> tuple[float, ...]:
    """Per phrase length, the cost a close phrase may have (none of one syllable)."""
    longest = max((len(e.syllables) for e in lex.entries), default=0)
    return tuple(_CLOSE * intents.max_cost(n) if n >= 2 else -1.0 for n in range(longest + 1))


def _close_phrases(syls: Sequence[py.Syllable], offset: int,
                   unsure: frozenset[int]) -> list[intents.Match]:
    """Lexicon phrases (fillers too) heard closely, syllable for syllable, in a run no chosen
    match writes (*syls* is that run, *offset* its place in the reply): 得厉害 after 膝盖疼 is
    written so, though the intent reading took 胸疼得厉害 for the whole. The longest, closest
    set that does not overlap."""
    local = frozenset(i - offset for i in unsure if 0 <= i - offset < len(syls))
    lex = intents.lexicon()
    # all candidates at every start at once: _cost's sums, within _CLOSE of the limit
    found = [intents.Match(offset + start, offset + start + len(e.syllables), e, cost)
             for e, start, cost in lex.windows(
                 syls, [0.5 if k in local else 1.0 for k in range(len(syls))],
                 min(len(local), 1), _limits(lex))
             if len(e.chars) == len(e.syllables)]
    return list(intents.schedule(found, len(syls), lambda m: (m.end - m.start) - 0.3 * m.cost,
                                 offset))


def _gap(syls: Sequence[py.Syllable], start: int, end: int, unsure: frozenset[int]) -> str:
    """Characters for syllables *start*…*end* no chosen match writes: close lexicon phrases,
    the IME's guess between them."""
    out = []
    pos = start
    for m in _close_phrases(syls[start:end], start, unsure):
        out.append(_guess(syls[pos:m.start]))
        out.append(m.entry.chars)
        pos = m.end
    out.append(_guess(syls[pos:end]))
    return "".join(out)


def render(syls: Sequence[py.Syllable], analysis: intents.Analysis | None = None,
           unsure: frozenset[int] = frozenset()) -> str:
    """Characters for *syls*: lexicon phrases where they were found, the IME's guess elsewhere.
    *unsure*: the syllables (indices) the recogniser was unsure of."""
    syls = tuple(syls)
    found = analysis or intents.analyse(syls, marks=unsure, read_urgent=True)
    out = []
    pos = 0
    for m in found.matches:
        # a phrase heard closely is written as the lexicon writes it; a far one is guessed like
        # other talk, so staff do not read words the resident may not have said
        if not _written(m, syls, unsure):
            continue
        out.append(_gap(syls, pos, m.start, unsure))
        out.append(m.entry.chars)
        pos = m.end
    out.append(_gap(syls, pos, len(syls), unsure))
    return "".join(out)
