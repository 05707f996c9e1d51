"""Chinese replies → answers: what a resident said (or pressed) becomes an intent and a value.

Intents: ``yes``/``no`` (negation aware: 不需要 is no), ``quantity`` (一个, 两盒, 俩, 5, 十),
``ok``/``needs_help`` (welfare), ``emergency`` (救命, 摔了, 站不起来: urgent), ``human`` (人工,
让社区的同志给我回电话), ``stop`` (别老打电话来: do not call again), ``repeat`` (你说什么),
``wrong_person`` (打错了) and ``later`` (现在没空: call back later).

Replies are compared as pinyin, with typed text and the recogniser's output alike: the phrases of
``data/lexicon.yaml`` (and numbers with a measure word) are searched in the reply's syllables,
forgiving tones and the confusions the recogniser is known to make (z/zh, n/l, de → děng …). The
longest phrases that fit win; a reply made mostly of words from nowhere in the lexicon is other
talk (a television, a neighbour, a long story with a stray 不要) and answers nothing. Pure
functions; no speech engine is imported here.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from callbot import defaults
from callbot import pinyin as py

YES, NO, QUANTITY, OK, NEEDS_HELP, REPEAT, WRONG_PERSON, LATER = (
    "yes", "no", "quantity", "ok", "needs_help", "repeat", "wrong_person", "later",
)
EMERGENCY, HUMAN, STOP = "emergency", "human", "stop"
INTENTS: tuple[str, ...] = (YES, NO, QUANTITY, OK, NEEDS_HELP, REPEAT, WRONG_PERSON, LATER,
                            EMERGENCY, HUMAN, STOP)
"""Every intent :func:`classify` can return."""

ALWAYS: tuple[str, ...] = (EMERGENCY, HUMAN, STOP, LATER, REPEAT, WRONG_PERSON)
"""Intents every question of every script listens for (a script may say what they do)."""

DEFAULT_VALUES: dict[str, Any] = {
    YES: True, NO: False, OK: "ok", NEEDS_HELP: "needs_help", REPEAT: None, WRONG_PERSON: None,
    LATER: None, EMERGENCY: "needs_help", HUMAN: None, STOP: None,
}
"""The value an intent carries when the reply gives no other (quantity carries its number;
``emergency`` carries needs_help, so a welfare field records it as such)."""

# When one reply holds several intents, the higher one wins: an emergency beats everything, "别再
# 打了" (stop) beats the no in it, "要两盒" is a quantity rather than a bare yes, "需要帮助" is
# needs_help rather than yes, "不是我" is wrong_person rather than no. ``later`` ranks below
# needs_help ("我不舒服，晚点再打" must reach a grid worker) and above ok/yes/no: "好的，我在忙"
# asks for a call back.
_RANK = (EMERGENCY, STOP, HUMAN, WRONG_PERSON, REPEAT, NEEDS_HELP, LATER, OK, QUANTITY, NO, YES)
_WEAK = frozenset((YES, NO, QUANTITY, OK))
"""Intents a few syllables of other talk can fake: they need a reply mostly made of them."""


@dataclass(frozen=True)
class Answer:
    """One understood reply: ``intent`` (one of :data:`INTENTS`), its ``value``, the ``text`` heard.
    ``urgent`` is true for an emergency; ``pinyin`` is what was compared."""

    intent: str
    value: Any
    text: str
    urgent: bool = False
    pinyin: str = field(default="", compare=False)


# --- the lexicon --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Entry:
    """A lexicon phrase: its characters, syllables and intents (primary first; none: filler)."""

    chars: str
    syllables: tuple[py.Syllable, ...]
    intents: tuple[str, ...]
    question: bool = False
    """A question form (要不要, 是不是): no answer, and not to be split into one."""
    word: bool = False
    """A word of no intent that sounds like one (儿子 "ér zi" like 二只, 接到 like 跌倒): when heard
    exactly, tones too, it is what was said and outweighs the loosely heard intent phrase."""


@dataclass(frozen=True)
class Match:
    """A phrase (or a quantity) found in a reply: syllables ``start``…``end`` (exclusive)."""

    start: int
    end: int
    entry: Entry
    cost: float
    value: Any = None
    doubtful: bool = False
    """A quantity whose numeral the recogniser was unsure of and heard off its tone (四盒 heard
    "jiù? hé": 九 is jiǔ, and 四 and 九 slip into each other): asked again rather than guessed."""

    @property
    def intents(self) -> tuple[str, ...]:
        return self.entry.intents


@dataclass(frozen=True)
class Analysis:
    """A reply read against the lexicon: the matches chosen (in order) and how much they explain."""

    syllables: tuple[py.Syllable, ...]
    matches: tuple[Match, ...]
    found: tuple[Match, ...] = field(default=(), compare=False)
    """Every match considered, chosen or not (for :func:`_tied`)."""

    @property
    def unexplained(self) -> int:
        """Syllables no phrase (nor filler) accounts for."""
        return len(self.syllables) - sum(m.end - m.start for m in self.matches)


class Lexicon:
    """Phrases per intent (``data/lexicon.yaml``), indexed by sound for the fuzzy search."""

    def __init__(self, entries: Sequence[Entry], weak: Iterable[str] = (), others: Iterable[str] = (),
                 hedges: Iterable[str] = ()):
        self.entries = list(entries)
        self.weak = frozenset(weak)
        """Phrases that count only in a short reply, like a yes (什么 inside other talk)."""
        self._index = _Index(self.entries)
        self.others = tuple(dict.fromkeys(tuple(py.from_text(w)) for w in others))
        """People (and things) other than the resident (隔壁, 老李, 天气), as syllables: a fine, yes
        or no told after one of them is about them — a neighbour's routine is no answer
        (:func:`_about_others`). Not entries: they explain no syllable (a story full of them is
        still other talk)."""
        self.hedges = tuple(dict.fromkeys(tuple(py.from_text(w)) for w in hedges))
        """A turn after a fine (还可以，就是… / 挺好的，不过…): what follows is the point
        (:func:`_hedged`)."""

    @classmethod
    def from_yaml(cls, text: str) -> Lexicon:
        import yaml

        data = yaml.safe_load(text) or {}
        sets = {k: [str(w) for w in v] for k, v in (data.get("sets") or {}).items()}
        secondary = {k: dict(v) for k, v in (data.get("secondary") or {}).items()}
        merged: dict[tuple[str, tuple[py.Syllable, ...]],
                     tuple[str, tuple[py.Syllable, ...], list[str]]] = {}
        for intent, phrases in (data.get("intents") or {}).items():
            if intent not in INTENTS:
                raise ValueError(f"lexicon: unknown intent {intent!r}")
            for raw in phrases:
                for chars, syls in _expand(str(raw), sets):
                    slot = merged.setdefault((chars, syls), (chars, syls, []))
                    if intent not in slot[2]:
                        slot[2].append(intent)
        for intent, extra in secondary.items():
            for other, words in extra.items():
                for (chars, _s), (_c, _s2, intents) in merged.items():
                    if intent == intents[0] and (words == "all" or chars in words) \
                            and other not in intents:
                        intents.append(other)
        shared: dict[tuple[str, ...], tuple[str, ...]] = {}  # a few dozen distinct intent tuples
        entries = [Entry(c, s, shared.setdefault(tuple(i), tuple(i))) for c, s, i in merged.values()]
        entries += _plain_entries(data, sets, set(merged))
        return cls(entries, weak=[str(w) for w in data.get("weak") or []],
                   others=[str(w) for w in data.get("others") or []],
                   hedges=[str(w) for w in data.get("hedges") or []])

    def candidates(self, syls: Sequence[py.Syllable], spare: int = 0) -> list[Entry]:
        """Entries sharing enough sounds with *syls* to be worth aligning (*spare* fewer, at
        least one: for syllables the recogniser was unsure of), in lexicon order."""
        return [self.entries[i] for i in self._index.candidates(syls, spare).tolist()]

    def search(self, syls: Sequence[py.Syllable], slack: Mapping[str, float] | None = None,
               keep: Iterable[str] = ()) -> list[tuple[Entry, list[tuple[int, int, float]]]]:
        """Each candidate entry (:meth:`candidates`, in lexicon order) found in *syls*, with its
        occurrences: ``_align(entry.syllables, syls, slack)`` for each, the same answers, the
        *slack* (extra cost allowed) by the entry's primary intent. Entries whose primary intent
        is in *keep* come even when not found (with no occurrences)."""
        return [(self.entries[i], got) for i, got in
                self._index.search(syls, slack or {}, frozenset(keep))]

    def windows(self, syls: Sequence[py.Syllable], weights: Sequence[float], spare: int,
                limits: Sequence[float]) -> list[tuple[Entry, int, float]]:
        """(entry, start, cost) of each candidate (:meth:`candidates` with *spare*, in lexicon
        order) laid syllable for syllable on *syls* at each start (ascending), where its cost —
        ``sum(distance(p, syls[start + k]) * weights[start + k] ...)``, the same sum in the same
        order — is within ``limits[len(entry.syllables)]`` (*limits* covers every length; a
        negative limit leaves that length out)."""
        return [(self.entries[i], start, cost) for i, start, cost in
                self._index.windows(syls, weights, spare, limits)]


class _Index:
    """A lexicon's entries as arrays, to pick the candidates for a reply and align them all at
    once (numpy): the same candidates and the same (start, end, cost) as :func:`_align` gives
    for each, cost for cost (the same float operations in the same order), so no answer changes.

    Candidates: entries sharing at least half their distinct coarse sounds (:func:`_coarse`)
    with the reply. Of those, an entry whose syllables cannot come within its limit even each
    at its nearest heard syllable (or deleted, 0.8) is not aligned: every alignment costs at
    least that (a lower bound; it drops ~3 of 4 candidates). The rest are aligned together, row
    by row of the dynamic programme, longest entries first (a shorter one leaves the batch after
    its last row)."""

    def __init__(self, entries: Sequence[Entry]):
        import numpy as np

        sounds: dict[py.Syllable, int] = {}
        keys: dict[tuple[str, str], int] = {}
        postings: list[list[int]] = []
        needed, lengths, primary, rows = [], [], [], []
        for i, e in enumerate(entries):
            rows.append([sounds.setdefault(s, len(sounds)) for s in e.syllables])
            own = {keys.setdefault(_coarse(s), len(keys)) for s in e.syllables}
            if len(keys) > len(postings):
                postings += [[] for _ in range(len(keys) - len(postings))]
            for k in own:
                postings[k].append(i)
            needed.append(max(1, (len(own) + 1) // 2))
            lengths.append(len(e.syllables))
            primary.append(INTENTS.index(e.intents[0]) if e.intents else len(INTENTS))
        self._np = np
        self._keys = keys
        self._postings = [np.array(p, dtype=np.int32) for p in postings]
        self._needed = np.array(needed, dtype=np.int16)
        self._length = np.array(lengths, dtype=np.int16)
        self._primary = np.array(primary, dtype=np.int8)
        self._longest = max(lengths, default=0)
        self._pad = np.full((len(rows), max(self._longest, 1)), len(sounds), dtype=np.int16)
        for i, r in enumerate(rows):
            self._pad[i, :len(r)] = r  # past its end, an entry's row names the extra sound
        self._table = py.SoundTable(list(sounds))
        self._size = len(entries)

    def candidates(self, syls: Sequence[py.Syllable], spare: int = 0):  # -> numpy.ndarray
        np = self._np
        hits = np.zeros(self._size, dtype=np.int16)
        for k in {_coarse(s) for s in syls}:
            n = self._keys.get(k)
            if n is not None:
                hits[self._postings[n]] += 1  # no entry twice in one posting list
        return np.flatnonzero(hits >= np.maximum(self._needed - spare, 1))

    def search(self, syls: Sequence[py.Syllable], slack: Mapping[str, float],
               keep: frozenset[str]) -> list[tuple[int, list[tuple[int, int, float]]]]:
        np = self._np
        cand = self.candidates(syls)
        n = len(syls)
        found: dict[int, list[tuple[int, int, float]]] = {}
        if n and cand.size:
            extra = np.zeros(len(INTENTS) + 1)
            for intent, more in slack.items():
                extra[INTENTS.index(intent)] = more
            by_length = np.array([max_cost(m) for m in range(self._longest + 1)])
            # as _align's limit: max_cost(m) + slack
            limit = by_length[self._length[cand]] + extra[self._primary[cand]]
            dist = np.zeros((self._table.size + 1, n))  # the extra sound (past an end) costs 0
            dist[:-1] = self._table.distances(syls)
            nearest = np.minimum(dist.min(axis=1), _DEL)
            bound = nearest[self._pad[cand]].sum(axis=1)
            near = bound <= limit + 1e-9
            found = self._align(cand[near], limit[near], dist, n)
        return [(i, found.get(i, [])) for i in cand.tolist()
                if i in found or (keep and self._primary[i] < len(INTENTS)
                                  and INTENTS[self._primary[i]] in keep)]

    def windows(self, syls: Sequence[py.Syllable], weights: Sequence[float], spare: int,
                limits: Sequence[float]) -> list[tuple[int, int, float]]:
        np = self._np
        n = len(syls)
        cand = self.candidates(syls, spare)
        lengths = self._length[cand]
        cand = cand[lengths <= n]
        if not n or not cand.size:
            return []
        lengths = self._length[cand]
        longest = int(lengths.max())
        # weighted distances, a zero row for the extra sound and zero columns past the end
        cost_of = np.zeros((self._table.size + 1, n + longest))
        cost_of[:-1, :n] = self._table.distances(syls) * np.array(weights, dtype=float)
        pad = self._pad[cand]
        total = np.zeros((cand.size, n))
        for k in range(longest):  # left to right, as sum() adds them (+ 0.0 past an end)
            total = total + cost_of[pad[:, k]][:, k:k + n]
        limit = np.array(limits, dtype=float)[lengths]
        fits = (total <= limit[:, None]) & (np.arange(n) <= (n - lengths)[:, None])
        rows, starts = np.nonzero(fits)
        return list(zip(cand[rows].tolist(), starts.tolist(), total[fits].tolist(), strict=True))

    def _align(self, idx, limit, dist, n: int) -> dict[int, list[tuple[int, int, float]]]:
        """:func:`_align` for the entries *idx* at once (each with its *limit*)."""
        np = self._np
        if not idx.size:
            return {}
        order = np.argsort(-self._length[idx], kind="stable")
        idx, limit = idx[order], limit[order]
        lengths = self._length[idx]
        pad = self._pad[idx]
        k = idx.size
        # active[i]: how many entries (the longest first) have an i-th syllable
        active = np.searchsorted(-lengths, -np.arange(int(lengths[0]) + 2), side="right")
        prev = np.zeros((k, n + 1))
        start_prev = np.tile(np.arange(n + 1), (k, 1))
        last = np.empty((k, n + 1))
        last_start = np.empty((k, n + 1), dtype=start_prev.dtype)
        for i in range(1, int(lengths[0]) + 1):
            k = int(active[i])
            prev, start_prev = prev[:k], start_prev[:k]
            sub = prev[:, :-1] + dist[pad[:k, i - 1]]
            dele = prev[:, 1:] + _DEL
            pick = sub <= dele
            best = np.where(pick, sub, dele)
            best_start = np.where(pick, start_prev[:, :-1], start_prev[:, 1:])
            cur = np.empty((k, n + 1))
            cur[:, 0] = i * _DEL
            cur[:, 1:] = best
            start_cur = np.empty_like(start_prev)
            start_cur[:, 0] = 0
            start_cur[:, 1:] = best_start
            # an insertion wins where strictly cheaper than both (as in _align): each pass lets
            # a run of insertions grow by one; stop when a pass changes nothing (the unique
            # solution of cur[j] = best[j] or cur[j - 1] + _INS, as _align computes left to right)
            while True:
                ins = cur[:, :-1] + _INS
                take = ins < best
                if not take.any():
                    break
                new = np.where(take, ins, best)
                new_start = np.where(take, start_cur[:, :-1], best_start)
                if np.array_equal(new, cur[:, 1:]) and np.array_equal(new_start, start_cur[:, 1:]):
                    break
                cur[:, 1:] = new
                start_cur[:, 1:] = new_start
            done = int(active[i + 1])  # entries of i syllables: their last row
            last[done:k] = cur[done:]
            last_start[done:k] = start_cur[done:]
            prev, start_prev = cur, start_cur
        cost = last[:, 1:]
        after = np.full_like(cost, np.inf)
        after[:, :-1] = last[:, 2:]
        ends = np.arange(1, n + 1)
        good = (cost <= limit[:, None]) & (last_start[:, 1:] < ends) & (cost <= after) \
            & (cost <= last[:, :-1])
        rows, cols = np.nonzero(good)
        out: dict[int, list[tuple[int, int, float]]] = {}
        for r, j, s, c in zip(rows.tolist(), cols.tolist(), last_start[:, 1:][good].tolist(),
                              cost[good].tolist(), strict=True):
            out.setdefault(int(idx[r]), []).append((s, j + 1, c))
        return out


def _plain_entries(data: Mapping[str, Any], sets: Mapping[str, list[str]],
                   taken: set[tuple[str, tuple[py.Syllable, ...]]]) -> list[Entry]:
    """The lexicon's entries of no intent: fillers, question forms and words that sound like an
    intent's phrase (a filler or word that is also an intent's phrase stays that phrase)."""
    out: list[Entry] = []
    for key, question, word in (("filler", False, False), ("questions", True, False),
                                ("words", False, True)):
        for raw in data.get(key) or []:
            for chars, syls in _expand(str(raw), sets):
                if question or (chars, syls) not in taken:
                    out.append(Entry(chars, syls, (), question=question, word=word))
    return out


def _expand(raw: str, sets: Mapping[str, list[str]]) -> list[tuple[str, tuple[py.Syllable, ...]]]:
    chars, _, reading = raw.partition("|")
    chars = chars.strip()
    parts = re.split(r"(\{\w+\})", chars)
    options = [sets[p[1:-1]] if p.startswith("{") and p[1:-1] in sets else [p] for p in parts]
    out = []
    for combo in itertools.product(*options):
        text = "".join(combo)
        syls = tuple(py.from_string(reading)) if reading.strip() else tuple(py.from_text(text))
        if syls:
            out.append((text, syls))
    return out


_COARSE_INI = {"zh": "z", "ch": "c", "sh": "s", "l": "n", "h": "f", "y": "", "w": ""}


@functools.lru_cache(maxsize=4096)
def _coarse(s: py.Syllable) -> tuple[str, str]:
    ini, fin, _tone = py.key(s)
    fin = fin[:-1] if fin.endswith("ng") else fin
    return _COARSE_INI.get(ini, ini), {"uo": "o", "e": "o"}.get(fin, fin)


@functools.lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The shipped lexicon (loaded once)."""
    text = resources.files("callbot").joinpath("data/lexicon.yaml").read_text(encoding="utf-8")
    return Lexicon.from_yaml(text)


# --- fuzzy search -------------------------------------------------------------------------------

_INS = 0.6  # a syllable heard inside a phrase that the phrase does not have
_DEL = 0.8  # a syllable of the phrase that was not heard


def max_cost(n: int) -> float:
    """How unlike the heard syllables may be to an *n*-syllable phrase and still be it."""
    if n <= 1:
        return defaults.INTENT_COST_ONE
    if n == 2:
        return defaults.INTENT_COST_TWO
    if n == 3:
        return defaults.INTENT_COST_THREE
    return defaults.INTENT_COST_PER_SYLLABLE * n


def _align(phrase: Sequence[py.Syllable], heard: Sequence[py.Syllable],
           slack: float = 0.0) -> list[tuple[int, int, float]]:
    """(start, end, cost) of each good occurrence of *phrase* in *heard* (approximate substring
    alignment: free start and end, substitutions weighed by :func:`callbot.pinyin.distance`)."""
    m, n = len(phrase), len(heard)
    limit = max_cost(m) + slack
    prev = [0.0] * (n + 1)
    start_prev = list(range(n + 1))
    for i in range(1, m + 1):
        cur = [i * _DEL] + [0.0] * n
        start_cur = [0] * (n + 1)
        p = phrase[i - 1]
        for j in range(1, n + 1):
            sub = prev[j - 1] + py.distance(p, heard[j - 1])
            dele = prev[j] + _DEL
            ins = cur[j - 1] + _INS
            if sub <= dele and sub <= ins:
                cur[j], start_cur[j] = sub, start_prev[j - 1]
            elif dele <= ins:
                cur[j], start_cur[j] = dele, start_prev[j]
            else:
                cur[j], start_cur[j] = ins, start_cur[j - 1]
        prev, start_prev = cur, start_cur
        if min(prev) > limit:
            return []  # costs only grow row by row: no occurrence can come within the limit
    out = []
    for j in range(1, n + 1):
        c = prev[j]
        if c <= limit and start_prev[j] < j and (j == n or c <= prev[j + 1]) and c <= prev[j - 1]:
            out.append((start_prev[j], j, c))
    return out


# numbers: syllable → numeral, then a measure word
_NUMERALS = {
    ("y", "i"): "一", ("", "er"): "二", ("n", "iang"): "两", ("s", "an"): "三", ("s", "i"): "四",
    ("w", "u"): "五", ("n", "iu"): "六", ("q", "i"): "七", ("b", "a"): "八", ("j", "iu"): "九",
    ("sh", "i"): "十", ("b", "ai"): "百", ("n", "ing"): "零", ("n", "ia"): "俩", ("s", "a"): "仨",
}
_NUMERAL_TONE = {"一": 1, "二": 4, "两": 3, "三": 1, "四": 4, "五": 3, "六": 4, "七": 1, "八": 1,
                 "九": 3, "十": 2, "百": 3, "零": 2, "俩": 3, "仨": 1}


@functools.cache
def _numeral_syllables() -> list[tuple[py.Syllable, str]]:
    # at first use, not import: a line process loads the readings from a memo first
    return [(py.from_text(ch)[0], ch) for ch in _NUMERAL_TONE]


_MEASURES = "个盒包只份袋件片副口位瓶箱桶双支"


@functools.cache
def _measure_syllables() -> list[tuple[py.Syllable, str]]:
    return [(s, c) for c in _MEASURES for s in py.from_text(c)]


def warm() -> None:
    """Load the lexicon and the numeral readings now (not at the first reply of a call)."""
    lexicon()
    _numeral_syllables()
    _measure_syllables()


def _measure(s: py.Syllable) -> str | None:
    """The measure word *s* says (个 heard as gèng counts: the recogniser often adds a nasal)."""
    best = min(_measure_syllables(), key=lambda m: py.distance(s, m[0]))
    return best[1] if py.distance(s, best[0]) <= defaults.INTENT_COST_ONE + 0.05 else None
_AFTER_BARE = {("", "a"), ("b", "a"), ("y", "a")}
_LOOSE_MEASURE = 0.65
"""How far the last syllable of a reply may be from 个 / 盒 and still be that measure word after a
numeral heard surely in its own tone (我家三口人，要三个 heard "… yào sān kēng": 三个)."""


def _loose_measure(s: py.Syllable) -> bool:
    return any(py.distance(s, m) <= _LOOSE_MEASURE + 1e-9
               for m, c in _measure_syllables() if c in "个盒")


def _numeral(s: py.Syllable, strict: bool) -> str | None:
    """The numeral *s* says. *strict* (no measure word follows): the syllable and its tone as the
    numeral is said (吧 "ba" is not 八); before a measure word the recogniser's usual slips count
    too (四 heard as zì, 一 as yù)."""
    ini, fin, tone = py.key(s)
    ini = "n" if ini == "l" and fin in ("iang", "iu", "ing", "ia") else ini
    ch = _NUMERALS.get((ini, fin))
    if ch is not None:
        if ch == "十" and tone not in (2, 5):
            return None  # 是 (shì) is not 十
        if strict and tone != _NUMERAL_TONE[ch] and not (ch == "一" and tone in (1, 2, 4)):
            return None
        return ch
    if strict:
        return None
    best = min(_numeral_syllables(), key=lambda n: py.distance(s, n[0]))
    if py.distance(s, best[0]) <= defaults.INTENT_NUMERAL_COST and best[1] not in ("十", "五"):
        return best[1]  # 十 / 五 are too like 是 / 我 to be guessed
    return None


def _off_tone(s: py.Syllable) -> bool:
    """Whether the numeral *s* was heard in a tone not its own (四 sì heard "jiù": 九 is jiǔ; 一
    takes any of its sandhi tones)."""
    ch = _numeral(s, strict=False)
    tone = py.key(s)[2]
    if ch is None:
        return True
    return tone != _NUMERAL_TONE[ch] and not (ch == "一" and tone in (1, 2, 4))


def _quantities(syls: Sequence[py.Syllable], marks: frozenset[int] = frozenset()
                ) -> list[Match]:
    out = []
    n = len(syls)
    i = 0
    while i < n:
        if _numeral(syls[i], strict=False) is None:
            i += 1
            continue
        j = i
        chars = ""
        while j < n and (ch := _numeral(syls[j], strict=j + 1 >= n or
                                         _measure(syls[j + 1]) is None)):
            chars += ch
            j += 1
        value = parse_number(chars) if chars else None
        if value is None:
            i = max(j, i + 1)
            continue
        m_ch = _measure(syls[j]) if j < n else None
        if m_ch is None and j == n - 1 and _loose_measure(syls[j]) \
                and all(_numeral(s, strict=True) for s in syls[i:j]) \
                and not any(k in marks for k in range(i, j)):
            m_ch = "个"  # 要三个 heard "yào sān kēng": the reply's last word, a measure word misheard
        bare_ok = j == n or py.key(syls[j])[:2] in _AFTER_BARE
        unsure = any(k in marks and _off_tone(syls[k]) for k in range(i, j))
        # a numeral off its tone before a measure word the recogniser was unsure of: two slips, no
        # number (天气挺好 sped up heard "tiān qì píng? hǎo": no 七瓶)
        unsure = unsure or (j in marks and any(_off_tone(syls[k]) for k in range(i, j)))
        if m_ch is not None:
            out.append(Match(i, j + 1, Entry(chars + m_ch, tuple(syls[i:j + 1]), (QUANTITY,)),
                             0.0, value, doubtful=unsure))
        elif bare_ok and all(_numeral(s, strict=True) for s in syls[i:j]):
            # a bare numeral (no measure word) the recogniser was unsure of, after other words, is
            # not guessed either: "yǒu hào jǔ gē néng? wǔ?" (有好几个呢 sped up) is no five boxes
            bare_unsure = i > 0 and any(k in marks for k in range(i, j))
            out.append(Match(i, j, Entry(chars, tuple(syls[i:j]), (QUANTITY,)), 0.0, value,
                             doubtful=unsure or bare_unsure))
        i = j if j > i else i + 1
    return out


def analyse(syls: Sequence[py.Syllable], lex: Lexicon | None = None,
            marks: frozenset[int] = frozenset(), read_urgent: bool = False) -> Analysis:
    """Find the lexicon's phrases and the quantities in *syls*; keep the best set that does not
    overlap (most syllables explained, closest matches, intents before fillers). *marks*: the
    syllables (indices) the recogniser was unsure of (``Final.pinyin``'s ``?``): a 没 so marked
    turns no phrase round, a numeral so marked and off its tone is asked again; with
    *read_urgent* an emergency phrase may also be read through one of them (the second reading
    of :func:`classify`)."""
    marks = frozenset(marks)
    if lex is None:
        return _analyse_shipped(tuple(syls), marks, read_urgent)
    return _analyse(tuple(syls), lex, marks, read_urgent)


@functools.lru_cache(maxsize=512)
def _analyse_shipped(syls: tuple[py.Syllable, ...], marks: frozenset[int],
                     read_urgent: bool) -> Analysis:
    return _analyse(syls, lexicon(), marks, read_urgent)


# syllables that say little on their own (particles, pronouns, 不, 一): an emergency phrase read
# through an unsure syllable must rest on something more (摔了 is not "hǎo? le")
_PARTICLES = frozenset(py.key(s)[:2] for s in py.from_string(
    "le de a ba ma ne ya la wa ō bù yī wǒ nǐ tā shì zhè nà gè men yǒu hǎo zài"))


def _unsure_urgent(e: Entry, syls: tuple[py.Syllable, ...], unsure: frozenset[int]
                   ) -> list[tuple[int, int, float]]:
    """Occurrences of the emergency phrase *e* where one syllable the recogniser was unsure of
    stands for one of the phrase's (costing at most ``INTENT_UNSURE_COST``) and every other one
    is heard surely and closely, one of them more than a particle."""
    n = len(e.syllables)
    if n < 2:
        return []
    limit = max_cost(n) + defaults.INTENT_URGENT_SLACK
    out = []
    for start in range(len(syls) - n + 1):
        if sum(start + k in unsure for k in range(n)) != 1:
            continue  # one unclear syllable, the rest clear
        cost, content = 0.0, False
        for k, p in enumerate(e.syllables):
            d = py.distance(p, syls[start + k])
            if start + k in unsure:
                d = min(d, defaults.INTENT_UNSURE_COST)
            elif d <= defaults.INTENT_COST_ONE and py.key(p)[:2] not in _PARTICLES:
                content = True
            cost += d
        if content and cost <= limit:
            out.append((start, start + n, cost))
    return out


_BIE = ("b", "ie")
_NEGATIONS = frozenset((("b", "u"), _BIE))  # 不, 别
_MEI = ("m", "ei")
"""没 is a negation only where it was heard surely: 着呢 slowed is heard "zhe méi?" (unsure), while
家里没人照顾我 heard "jiā lǐ méi rén zhào gù wǒ" must not be 家里人照顾我 (fine) with a 没 inserted."""


def _gapped(n_phrase: int, n_heard: int, cost: float) -> bool:
    """Whether a phrase of *n_phrase* syllables, found in *n_heard* fewer ones at *cost*, was heard
    with a syllable missing AND another one off by more than a tone (``INTENT_COST_ONE``): two
    different slips, no match (中午再说吧 is "zhōng? wǒ shuō ba" in 让社区的人跟我说吧 heard fast —
    without its 再 and with 午 slipped to 我: no request to call back; 肚子又疼了 heard "dú zi téng
    le", 又 missing and a tone off, still counts). Not for an emergency (a cry heard badly is still
    a cry) nor a stop (its call word, heard closely, is its guard: 把我的号码删掉 heard "hòu mǎ")."""
    missing = n_phrase - n_heard
    return missing > 0 and cost - _DEL * missing > defaults.INTENT_COST_ONE + 1e-9


def _every(phrase: Sequence[py.Syllable], heard: Sequence[py.Syllable]) -> bool:
    """Whether each 每 ("every") of *phrase* is heard as a "mei" followed closely by the word it
    counts (每天, 每周, 每个): 没 is 每 but for its tone, and tones slip, so 我没出去遛弯 heard "wǒ
    měi chū qù liù wān" is no 每天都出去遛弯 with 天都 left out, 孩子没来看过我 no 孩子每周来看我, and
    "nǎ tiān wǒ qù cài shì chǎng" no 每天去菜市场. True for a phrase without 每."""
    for k, p in enumerate(phrase):
        if py.key(p)[:2] != _MEI or py.key(p)[2] != 3 or k + 1 >= len(phrase):
            continue
        if not any(py.key(h)[:2] == _MEI and j + 1 < len(heard)
                   and py.distance(phrase[k + 1], heard[j + 1]) <= defaults.INTENT_COST_ONE + 1e-9
                   for j, h in enumerate(heard)):
            return False
    return True


def _lost_to_negation(phrase: Sequence[py.Syllable], syls: Sequence[py.Syllable], start: int,
                      end: int, marks: frozenset[int]) -> bool:
    """Whether a fine or a yes heard with syllables missing comes right after a negation (不, 别, a
    surely heard 没) and does not begin with one: the negation stood where they were and turns it
    round. 我没出去遛弯 is no 我每天都出去遛弯 with 每天都 left out (a resident who stays in, heard as
    fine). A complaint stays one (孩子不来看我 is still 来看看我, needs_help)."""
    if end - start >= len(phrase) or start == 0 or py.key(phrase[0])[:2] in (*_NEGATIONS, _MEI):
        return False
    k = py.key(syls[start - 1])[:2]
    return k in _NEGATIONS or (k == _MEI and start - 1 not in marks)


def _refused(phrase: Sequence[py.Syllable], syls: Sequence[py.Syllable], start: int) -> bool:
    """Whether a 别 comes just before (one or two syllables: 别再, 别老) a phrase that has none:
    别再给我留了 is no 给我留着 (a yes) with a syllable missing."""
    return any(py.key(s)[:2] == _BIE for s in syls[max(0, start - 2):start]) \
        and not any(py.key(p)[:2] == _BIE for p in phrase)


def _negated(phrase: Sequence[py.Syllable], heard: Sequence[py.Syllable],
             unsure: Sequence[bool] = ()) -> bool:
    """Whether *heard* holds a negation that nothing of *phrase* sounds like (好的呀，我不要 is not
    好的呀我要 with a syllable inserted; 什么 heard "shēn méi" is still 什么: 么 is near 没).
    *unsure* flags the syllables of *heard* the recogniser was unsure of (没 counts only when sure)."""
    def negation(i: int, h: py.Syllable) -> bool:
        k = py.key(h)[:2]
        return k in _NEGATIONS or (k == _MEI and not (i < len(unsure) and unsure[i]))

    return any(negation(i, h)
               and all(py.distance(p, h) > defaults.INTENT_COST_TWO for p in phrase)
               for i, h in enumerate(heard))


_CALL_WORDS = "打电话骚扰联系烦删黑接号码拨"
"""What a do-not-call request is about: a call (打, 电话, 接), being pestered (骚扰, 烦) or the number
(删, 拉黑, 号码). 别给我留了 ("do not keep me one") is one syllable from 别给我打了 and means no to the
offer: a stop phrase counts only where one of its call words is heard closely."""


@functools.cache
def _call_keys() -> frozenset[tuple[str, str]]:
    return frozenset(py.key(s)[:2] for s in py.from_text(_CALL_WORDS))


def _calls(phrase: Sequence[py.Syllable], heard: Sequence[py.Syllable]) -> bool:
    """Whether *heard* holds, closely, one of the call words of the stop phrase *phrase* (True for
    a phrase that has none: 烦死了 is about the calls without naming them)."""
    keys = _call_keys()
    words = [p for p in phrase if py.key(p)[:2] in keys]
    return not words or any(py.distance(p, h) <= defaults.INTENT_COST_ONE
                            for p in words for h in heard)


_MANY = frozenset((("d", "uo"), ("j", "i"), ("j", "v"), ("q", "v"), ("q", "i"), ("j", "iu")))
"""好多 / 好几 ("a lot of", "several"), 几 also as the recogniser slips it (jǔ, qǔ, qī, jiǔ: 有好几个呢
sped up was "yǒu hào jǔ gē", nine boxes): after 有 + 好 no number is meant."""
_HAVE = (("y", "ǒu"), ("h", "ǎo"))


def _counts(syls: Sequence[py.Syllable]) -> list[Match]:
    """有好多 / 有好几 ("there are plenty", "several left"): the 好 and the 多 / 几 after a 有 say
    how many, as a filler (还有好多呢 is not 好着呢 "fine", 家里还有好几盒 not 七盒 "seven")."""
    out = []
    for k in range(1, len(syls) - 1):
        if py.distance(syls[k - 1], _HAVE[0]) <= defaults.INTENT_COST_ONE and \
                py.distance(syls[k], _HAVE[1]) <= defaults.INTENT_COST_ONE and \
                py.key(syls[k + 1])[:2] in _MANY:
            word = "好多" if py.key(syls[k + 1])[1] == "uo" else "好几"
            out.append(Match(k, k + 2, Entry(word, tuple(syls[k:k + 2]), ()), 0.0))
    return out


def _analyse(syls: tuple[py.Syllable, ...], lex: Lexicon,
             marks: frozenset[int] = frozenset(), read_urgent: bool = False) -> Analysis:
    unsure = marks if read_urgent else frozenset()
    found: list[Match] = list(_quantities(syls, marks))
    for e, occurrences in lex.search(syls, {EMERGENCY: defaults.INTENT_URGENT_SLACK},
                                     keep=(EMERGENCY,) if unsure else ()):
        urgent = e.intents[:1] == (EMERGENCY,)
        for start, end, cost in occurrences:  # as _align(e.syllables, syls, slack) finds them
            if e.word and not _exactly(e.syllables, syls[start:end], marks, start):
                continue  # a word of no intent counts only as said (儿子, not "èr zi?")
            if e.intents and _negated(e.syllables, syls[start:end],
                                      [i in marks for i in range(start, end)]):
                continue  # a 不 / 别 (or a surely heard 没) inside a phrase with nothing like it
            if e.intents[:1] in ((OK,), (YES,)) \
                    and _lost_to_negation(e.syllables, syls, start, end, marks):
                continue  # 我没出去遛弯: the 没 stood where 每天都 was, not a fine
            if not _every(e.syllables, syls[start:end]):
                continue  # 每天 heard without its 天 (or as 没 before another word): not that phrase
            if e.intents[:1] == (YES,) and _refused(e.syllables, syls, start):
                continue  # 别再给我留了: a 别 before what is wanted refuses it
            if e.intents and e.intents[0] not in (EMERGENCY, STOP) \
                    and _gapped(len(e.syllables), end - start, cost):
                continue  # 中午再说吧 heard without its 再 and with 午 slipped: not that phrase
            if e.intents[:1] == (STOP,) and not _calls(e.syllables, syls[start:end]):
                continue  # 别给我留了 is no do-not-call request
            found.append(Match(start, end, e, cost))
        if urgent and unsure:
            for start, end, cost in _unsure_urgent(e, syls, unsure):
                found.append(Match(start, end, e, cost))
    found = _words_heard(found, syls, marks)
    counts = _counts(syls)
    if counts:  # a 好 / 多 / 几 of 有好多 is part of no fine, yes or number (a no says it: 有好几个)
        held = {k for c in counts for k in range(c.start, c.end)}
        found = [m for m in found if not (set(m.intents[:1]) & (_WEAK - {NO})
                                          and held & set(range(m.start, m.end)))] + counts
    found = _said_numbers(found, syls)
    return Analysis(syls, schedule(found, len(syls), _weight), tuple(found))


def _words_heard(found: list[Match], syls: Sequence[py.Syllable],
                 marks: frozenset[int]) -> list[Match]:
    """*found* without the non-urgent phrases heard loosely (any slip) across a word of no intent
    heard exactly that the phrase does not hold: 那个歌挺好听的 heard "nà gè gē tǐng hǎo tīng de"
    is no 过得挺好 ("gè gē tǐng hǎo", 0.7 off) once 挺好听 is heard as said. An emergency phrase
    is kept (the scheduler weighs it)."""
    exact = [m for m in found if m.entry.word and not m.intents]
    if not exact:
        return found
    return [m for m in found if not (
        m.intents and m.intents[0] != EMERGENCY and m.cost > 1e-9
        and any(w.start < m.end and m.start < w.end and w.entry.chars not in m.entry.chars
                for w in exact))]


def _said_numbers(found: list[Match], syls: Sequence[py.Syllable]) -> list[Match]:
    """*found* without the phrases heard only loosely (more than ``INTENT_COST_ONE`` off) across
    a number said as a number with its measure word (numeral in its own tone, not doubtful) that
    the phrase does not say: 可以给我两盒吗 is no slip of 可以给我留着 (a yes without the number),
    能要两盒吗 none of 能要几盒. An emergency phrase is never dropped."""
    said = [q for q in found if q.value is not None and q.end - q.start >= 2 and not q.doubtful
            and all(_numeral(s, strict=True) for s in syls[q.start:q.end - 1])]
    if not said:
        return found
    close = defaults.INTENT_COST_ONE + 1e-9

    def swallows(m: Match) -> bool:
        return any(m.start <= q.start and q.end <= m.end and not any(
            py.distance(p, syls[q.start]) <= close for p in m.entry.syllables) for q in said)

    return [m for m in found if m.value is not None or m.cost <= close
            or m.intents[:1] == (EMERGENCY,) or not swallows(m)]


def _exactly(phrase: Sequence[py.Syllable], heard: Sequence[py.Syllable], marks: frozenset[int],
             start: int) -> bool:
    """*heard* is *phrase*, syllable for syllable and tone for tone, none of it marked unsure."""
    return len(phrase) == len(heard) and all(
        py.key(a) == py.key(b) and start + i not in marks
        for i, (a, b) in enumerate(zip(phrase, heard, strict=True)))


def _weight(m: Match) -> float:
    """How much a match is worth in :func:`schedule`: its length, a little more per syllable of
    one phrase (one long phrase beats the short ones inside it: 不太好 is not 不 + 太 + 好), less
    for a filler and for a loose match."""
    length = m.end - m.start
    kind = (1.0 if m.value is None else 0.997) if m.intents else \
        1.0 if m.entry.question or m.entry.word else 0.9
    return (length + 0.15 * (length - 1)) * kind - 0.3 * m.cost


def schedule(found: Iterable[Match], n: int, weight: Callable[[Match], float],
             offset: int = 0) -> tuple[Match, ...]:
    """The set of *found* matches that do not overlap with the highest total *weight* (weighted
    interval scheduling over the *n* syllable positions from *offset*)."""
    best: list[tuple[float, tuple[Match, ...]]] = [(0.0, ())] * (n + 1)
    by_end: dict[int, list[Match]] = {}
    for m in found:
        by_end.setdefault(m.end - offset, []).append(m)
    for j in range(1, n + 1):
        best[j] = best[j - 1]
        for m in by_end.get(j, ()):
            score = best[m.start - offset][0] + weight(m)
            if score > best[j][0] + 1e-9:
                best[j] = (score, best[m.start - offset][1] + (m,))
    return best[n][1]


def _syllables(text: str, pinyin: str | None) -> list[py.Syllable]:
    if pinyin:
        return py.from_string(pinyin)
    return py.from_text(normalize(text))


def classify(text: str, expect: Iterable[str] | None = None, *,
             pinyin: str | None = None) -> Answer | None:
    """What a reply answers, among the *expect* intents (all when None); None when nothing fits.

    *pinyin* is the recogniser's toned pinyin of the reply (``Final.pinyin``); typed text (and a
    reply without it) is read with pypinyin — the same comparison either way."""
    wanted = set(INTENTS if expect is None else expect)
    unknown = wanted - set(INTENTS)
    if unknown:
        raise ValueError(f"unknown intent(s) {sorted(unknown)}; known: {', '.join(INTENTS)}")
    syls = _syllables(text, pinyin)
    if not syls:
        return None
    unsure = py.unsure_of(pinyin) if pinyin else frozenset()
    marked = py.to_string(syls, unsure)
    got = _decide(analyse(syls, marks=unsure), wanted, text, marked, unsure)
    if got is None and unsure and wanted & {EMERGENCY, NEEDS_HELP}:
        # nothing understood, so a second reading (never one that overrides what was heard):
        # one syllable the recogniser was unsure of may be read as the emergency word it could
        # be (救命 heard as "yòng? mìng" on a noisy line), when that reading explains the reply
        # (at most a syllable or a third of it left over: a short cry, not a long sentence)
        again = analyse(syls, marks=unsure, read_urgent=True)
        if again.unexplained <= max(defaults.INTENT_WEAK_UNEXPLAINED,
                                    defaults.INTENT_WEAK_SHARE * len(syls)):
            got = _decide(again, wanted, text, marked)
            if got is not None and not got.urgent:
                got = None
    return got


def _decide(found: Analysis, wanted: set[str], text: str, pinyin: str,  # noqa: C901
            marks: frozenset[int] = frozenset()) -> Answer | None:
    total = len(found.syllables)
    unexplained = found.unexplained
    candidates: list[tuple[str, Any, bool, Match]] = []
    for m in found.matches:
        for k, intent in enumerate(m.intents):
            value = m.value if intent == QUANTITY else DEFAULT_VALUES[intent]
            candidates.append((intent, value, k == 0, m))
    found_weak = lexicon().weak
    # 什么 inside a reply that says something else is part of it, not a request to repeat
    if any(m.intents and m.entry.chars not in found_weak for m in found.matches):
        candidates = [c for c in candidates if c[3].entry.chars not in found_weak]
    candidates = _about_others(candidates, found)
    candidates = _hedged(candidates, found)
    rivals = list(candidates)  # every meaning heard, before the rules below choose among them
    present = {c[0] for c in candidates}
    if OK in present and EMERGENCY not in present:
        weighed = _fine_over_doubt(candidates)
        if weighed is None:
            return None
        candidates = weighed
        present = {c[0] for c in candidates}
    # 好的，我在忙 / 什么？现在没空: a call-back request beats yes, no and repeat
    if LATER in present:
        candidates = [c for c in candidates if c[0] not in (YES, NO, REPEAT)]
    # 好的，不需要 … a negation anywhere beats a yes
    if NO in present:
        candidates = [c for c in candidates if c[0] != YES]
    # 我不舒服 is needs_help, never an "ok" that a bare 好 might suggest
    if present & {NEEDS_HELP, EMERGENCY}:
        candidates = [c for c in candidates if c[0] != OK]
    # other talk: a reply mostly of words the lexicon does not know gets no weak answer, and a
    # long stretch of it none at all
    # for a weak answer, words that mean something this question does not ask (我很好 to "do you
    # need masks?") are as foreign as unknown ones: 挺好的…没 is not a "no"
    offtopic = sum(m.end - m.start for m in found.matches
                   if m.intents and not (set(m.intents) & wanted)
                   and not (QUANTITY in m.intents and YES in wanted)
                   and not (set(m.intents) <= {YES, NO, OK} and QUANTITY in wanted))
    # in a long reply a lone 是 / 有 / 要 / 好 is a word of the talk, not an answer: it explains
    # nothing (写信都要好几天 is no yes)
    if total > defaults.INTENT_LONG_REPLY:
        offtopic += sum(1 for m in found.matches
                        if m.end - m.start == 1 and set(m.intents) & _WEAK and m.value is None)
    weak_ok = unexplained + offtopic <= max(defaults.INTENT_WEAK_UNEXPLAINED,
                                            defaults.INTENT_WEAK_SHARE * total)
    strong_ok = unexplained <= max(defaults.INTENT_STRONG_UNEXPLAINED,
                                   defaults.INTENT_STRONG_SHARE * total)
    urgent_ok = unexplained <= max(defaults.INTENT_STRONG_UNEXPLAINED,
                                   defaults.INTENT_URGENT_SHARE * total)
    slack_ok = unexplained <= max(defaults.INTENT_STRONG_UNEXPLAINED,
                                  defaults.INTENT_SLACK_SHARE * total)
    fixed = []
    for intent, value, primary, m in candidates:
        if intent == QUANTITY and QUANTITY not in wanted:
            if value == 0:
                intent, value = NO, False
            elif YES in wanted:
                intent, value = YES, True
        weak = intent in _WEAK or m.entry.chars in found_weak or (
            len(m.entry.syllables) == 1 and intent != QUANTITY)
        if weak:
            if not weak_ok:
                continue
            # a one-syllable yes heard in another tone is a word of the talk, not an answer, unless
            # it is the reply (我们家口罩够用了 heard "… gòu yòu mén?": 又 is no 有)
            if len(m.entry.syllables) == 1 and intent == YES and m.cost > 1e-9 \
                    and total - unexplained > m.end - m.start and total > 2:
                continue
            # a weak word (什么, 疼) inside other words must be heard closely: "shēn méi" in
            # 浑身没劲 is two slips from 什么, no request to repeat
            if m.entry.chars in found_weak and m.cost > defaults.INTENT_COST_ONE + 1e-9 \
                    and m.end - m.start < total:
                continue
        elif m.intents[0] == EMERGENCY:
            # an emergency phrase heard only through the extra slack (or an unsure syllable) must
            # be most of the reply: in a long story "shēng le" is not 摔了
            near = m.cost <= max_cost(len(m.entry.syllables)) + 1e-9
            if not (urgent_ok if near else slack_ok):
                continue
        elif not strong_ok:
            continue
        fixed.append((intent, value, primary, m.intents[0] == EMERGENCY, m))
    for primary_pass in (True, False):
        for intent in _RANK:
            for cand_intent, value, primary, urgent, m in fixed:
                if primary == primary_pass and cand_intent == intent and intent in wanted:
                    if m.doubtful or _in_doubt(m, intent, rivals, found.syllables) \
                            or _tied(m, intent, found) \
                            or (not urgent and _slipped_unsure(m, marks)):
                        return None
                    return Answer(intent, value, text, urgent=urgent, pinyin=pinyin)
    return None


_I = ("w", "o")  # 我 (wǒ), any tone


def _heard_closely(words: Iterable[tuple[py.Syllable, ...]], syls: Sequence[py.Syllable]
                   ) -> list[tuple[int, int]]:
    """(start, end) of each of *words* heard in *syls* syllable for syllable, each at most
    ``INTENT_COST_ONE`` off (老两口 is no 老刘, 电视剧 no 但是)."""
    close = defaults.INTENT_COST_ONE + 1e-9
    return [(i, i + len(w)) for w in words for i in range(len(syls) - len(w) + 1)
            if all(py.distance(a, b) <= close for a, b in zip(w, syls[i:i + len(w)], strict=True))]


def _about_others(candidates: list[tuple[str, Any, bool, Match]], found: Analysis
                  ) -> list[tuple[str, Any, bool, Match]]:
    """*candidates* without the fine, yes, no or number told after someone other than the
    resident (the lexicon's ``others``: 隔壁, 王大妈, 老李 …) with no 我 between them: 隔壁王大妈每天早上
    去买菜 is her routine, not the resident's "fine". A complaint or a cry stays (隔壁老李摔倒了 is
    for a grid worker)."""
    if not any(c[0] in _WEAK for c in candidates):
        return candidates
    syls = found.syllables
    told = [end for _start, end in _heard_closely(lexicon().others, syls)]
    if not told:
        return candidates

    def about(m: Match) -> bool:
        return any(end <= m.start and not any(py.key(s)[:2] == _I for s in syls[end:m.end])
                   for end in told)

    return [c for c in candidates if not (c[0] in _WEAK and about(c[3]))]


def _hedged(candidates: list[tuple[str, Any, bool, Match]], found: Analysis
            ) -> list[tuple[str, Any, bool, Match]]:
    """*candidates* without a fine followed by a turn (the lexicon's ``hedges``: 就是, 不过, 但是 …)
    after which the reply says something else or stops: 还可以，就是晚上睡不好 is the complaint (or,
    when that is not understood, asked again), and 还行，就是 cut at its pause is no fine yet. 挺好的，
    就是挺好 and 身体还行，就是年纪大了 (a word of no intent, 年纪大, after the turn, with at most one
    syllable beside it unknown: "nián jì dà lěng") stay fine."""
    if not any(c[0] == OK for c in candidates):
        return candidates
    syls = found.syllables
    turns = _heard_closely(lexicon().hedges, syls)
    if not turns:
        return candidates
    def turned(m: Match) -> bool:
        for start, end in turns:
            if start < m.end:
                continue
            after = set(range(end, len(syls)))
            kept = [f for f in found.matches if f.start >= end
                    and (OK in f.intents or not f.intents)]  # fine, a word, a filler
            said = {k for f in kept for k in range(f.start, f.end)}
            words = any(OK in f.intents or f.entry.word for f in kept)
            if not words or len(after - said) > (1 if any(f.entry.word for f in kept) else 0):
                return True  # something else after the turn, or nothing (cut at its pause)
        return False

    return [c for c in candidates if not (c[0] == OK and turned(c[3]))]


def _tied(m: Match, intent: str, found: Analysis) -> bool:
    """Whether the slip *m* (more than ``INTENT_COST_ONE`` off), the only ground for *intent* (no
    other phrase of it heard closely in the reply), fits the same syllables exactly as well as a
    phrase of another meaning: which one was said is a toss-up, so the reply is asked again (不用了
    heard "bù yòng lún? wǒ" is 不用管我 "fine" and 不用给我 "no" at one cost, and the lexicon's order
    chose; 家里没米了，我出不去 keeps its needs_help through the exact 出不去)."""
    close = defaults.INTENT_COST_ONE + 1e-9
    if intent in (NEEDS_HELP, EMERGENCY) or m.cost <= close or any(
            r is not m and intent in r.intents and r.cost <= close for r in found.matches):
        return False  # trouble is never set aside for a toss-up: a grid worker hears of it
    return any(o is not m and o.start == m.start and o.end == m.end and o.intents
               and abs(o.cost - m.cost) <= 1e-9 and intent not in o.intents
               and frozenset((o.intents[0], intent)) not in _AGREE for o in found.found)


def _slipped_unsure(m: Match, marks: frozenset[int]) -> bool:
    """Whether a short phrase (two syllables or fewer) was found only through a slip (more than
    ``INTENT_COST_ONE`` off) on syllables the recogniser itself was unsure of: 九盒 sped up and
    noisy heard "yǒu sǐ?", two slips from 有事 (needs_help). Asked again."""
    return m.cost > defaults.INTENT_COST_ONE + 1e-9 and m.end - m.start <= 2 \
        and any(k in marks for k in range(m.start, m.end))


_AGREE = (frozenset((EMERGENCY, NEEDS_HELP)), frozenset((QUANTITY, YES)), frozenset((YES, OK)))
"""Intents one reply may hold both of without doubt (摔了…不舒服, 要两盒, 好的 as yes or fine)."""


def _in_doubt(m: Match, intent: str, rivals: list[tuple[str, Any, bool, Match]],
              syls: tuple[py.Syllable, ...]) -> bool:
    """Whether the answer *intent*, from the phrase *m*, is too doubtful to keep: *m* was heard
    only loosely (more than ``INTENT_COST_ONE`` off), a phrase of another meaning (two syllables
    or more, not one that goes with it: :data:`_AGREE`) was heard closely beside it, and no phrase
    of *intent* is heard closely within *m*'s syllables either (我不舒服 read as 胃不舒服 still
    holds an exact 不舒服). The rank of intents decides between two meanings heard clearly; between
    a clear one and a slip, the reply is asked again — a wrong answer is kept, a question costs
    little. 都挺好的，孩子刚来看过我: "lái kàn guò wǒ" is a slip from 来看看我 (needs_help) beside
    an exact 挺好的; 一个就行了 heard "yí gè jiù xiě? wèn": the unsure 救 of 救命 beside an exact 一个."""
    close = defaults.INTENT_COST_ONE + 1e-9
    if m.cost <= close:
        return False
    if not any(r is not m and r.cost <= close and r.end - r.start >= 2
               and intent not in r.intents and r.intents[0] not in m.intents
               and frozenset((r.intents[0], intent)) not in _AGREE
               for r in {id(c[3]): c[3] for c in rivals}.values()):
        return False
    span = syls[m.start:m.end]
    for e in lexicon().candidates(span):
        if e.intents[:1] == (intent,) and len(e.syllables) >= 2 and \
                any(cost <= close for _s, _e, cost in _align(e.syllables, span)):
            return False
    return True


def _fine_over_doubt(candidates: list[tuple[str, Any, bool, Match]]
                     ) -> list[tuple[str, Any, bool, Match]] | None:
    """Drop the complaints of a reply that says clearly it is fine and has them only loosely
    (``INTENT_FINE_OVER_DOUBT``); None (ask again) when the complaints are longer but every one
    is more than a slip off (老毛病了，不要紧，挺好的 slowed: "lǎo máo bìng le? bú yào qù? tǐng? hǎo
    de?" is 1.6 off 老毛病又犯了, beside an exact 挺好的); otherwise *candidates* as they are."""
    close = defaults.INTENT_COST_ONE + 1e-9
    fine = max((len(c[3].entry.syllables) for c in candidates
                if c[0] == OK and c[2] and c[3].cost <= close), default=0)
    if fine < defaults.INTENT_FINE_OVER_DOUBT:
        return candidates
    complaints = [c[3] for c in candidates if c[0] == NEEDS_HELP]
    if all(m.cost > close and len(m.entry.syllables) <= 2 for m in complaints):
        return [c for c in candidates if c[0] != NEEDS_HELP]
    if complaints and all(m.cost > defaults.INTENT_COST_TWO + 1e-9 for m in complaints):
        return None  # a longer complaint, but only guessed at: neither, ask again
    return candidates


def find_phrase(syls: Sequence[py.Syllable], phrases: Sequence[str]) -> str | None:
    """The longest of *phrases* heard in *syls* (the ``match`` of ``callbot listen --expect``)."""
    best: tuple[int, float, str] | None = None
    for p in phrases:
        ps = py.from_text(p)
        if not ps:
            continue
        for _s, _e, cost in _align(ps, syls):
            cand = (len(ps), -cost, p)
            if best is None or cand[:2] > best[:2]:
                best = cand
    return best[2] if best else None


# --- text helpers -------------------------------------------------------------------------------

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "仨": 3, "四": 4,
              "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_PUNCT_RE = re.compile(r"[\s,.!?;:'\"，。！？；：、…~～·\-—()（）\[\]【】<>《》]+")


def normalize(text: str) -> str:
    """Full-width → half-width, no spaces or punctuation, ASR ``<unk>``/``[unk]`` tokens removed."""
    text = unicodedata.normalize("NFKC", text or "")
    text = re.sub(r"<unk>|\[unk\]|<UNK>", "", text, flags=re.IGNORECASE)
    return _PUNCT_RE.sub("", text)


def parse_number(token: str) -> int | None:
    """``"两"`` → 2, ``"十二"`` → 12, ``"二十"`` → 20, ``"5"`` → 5; None when not a number."""
    if not token:
        return None
    if token.isdigit():
        return int(token)
    if token in ("俩",):
        return 2
    if token in ("仨",):
        return 3
    total, current = 0, 0
    for ch in token:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


# Phrases a keyword-spotting recogniser listens for, per intent; each classifies back to its intent.
# Short, common syllables (是, 好, 行, 嗯, 可以) are left out: with the KWS model they fired on
# unrelated speech (广州市… → 是) and on 喂; 是的 / 好的 are spotted reliably instead.
_PHRASES: dict[str, list[str]] = {
    YES: ["需要", "要", "要的", "是的", "是啊", "好的", "好啊", "对", "对的", "没问题"],
    NO: ["不需要", "不要", "不是", "不用了", "不用", "不对", "没有", "不行", "算了"],
    OK: ["我很好", "很好", "挺好的", "还好", "还行", "还可以", "不错", "没事", "好的"],
    NEEDS_HELP: ["不太好", "不好", "不舒服", "我不舒服", "需要帮助", "难受", "生病了", "帮帮我"],
    REPEAT: ["你说什么", "什么", "听不清", "没听清", "再说一遍", "听不见"],
    WRONG_PERSON: ["打错了", "不是我", "不认识"],
    # 忙 alone is one syllable (too easily heard in other speech): 在忙 / 我在忙 instead
    LATER: ["没空", "现在没空", "没时间", "在忙", "我在忙", "正在忙", "不方便", "现在不方便",
            "等会儿再打", "一会儿再打", "晚点再打", "晚点打", "晚一点", "待会儿", "稍后再打",
            "改天再打", "现在有事"],
    EMERGENCY: ["救命", "摔了", "摔倒了", "站不起来", "心口疼", "透不过气", "喘不过气", "叫救护车"],
    HUMAN: ["人工", "转人工", "找真人", "回电话"],
    STOP: ["别打了", "别再打了", "不要再打了", "别老打电话", "不想接这种电话"],
}
_QUANTITY_WORDS = {1: "一", 2: "两", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七", 8: "八", 9: "九",
                   10: "十"}


def phrases(expect: Iterable[str] | None = None, *, max_quantity: int = 5) -> list[str]:
    """Chinese phrases a keyword-spotting ASR should listen for to hear the *expect* intents."""
    wanted = list(INTENTS if expect is None else expect)
    unknown = set(wanted) - set(INTENTS)
    if unknown:
        raise ValueError(f"unknown intent(s) {sorted(unknown)}; known: {', '.join(INTENTS)}")
    out: list[str] = []
    for intent in wanted:
        if intent == QUANTITY:
            for n in range(1, min(max_quantity, 10) + 1):
                word = _QUANTITY_WORDS[n]
                out += [f"{word}个", f"{word}盒", f"要{word}盒", f"要{word}个"]
            out.append("俩")
        else:
            out += _PHRASES[intent]
    return list(dict.fromkeys(out))


def parse_key_action(spec: Any) -> tuple[str, Any]:
    """A keymap entry → (intent, value): ``yes``, ``quantity=3``, ``3`` (a quantity), ``true``."""
    if isinstance(spec, bool):
        return (YES, True) if spec else (NO, False)
    if isinstance(spec, int):
        return QUANTITY, spec
    if not isinstance(spec, str):
        raise ValueError(f"按键设置无效 (invalid key action): {spec!r}")
    intent, sep, raw = spec.strip().partition("=")
    intent = intent.strip()
    if intent not in INTENTS:
        if intent.isdigit():
            return QUANTITY, int(intent)
        raise ValueError(f"按键对应的意图 {intent!r} 不存在 (unknown intent); 可用: {', '.join(INTENTS)}")
    if not sep:
        if intent == QUANTITY:
            raise ValueError("quantity 按键需要写数量，如 quantity=3 (a quantity key needs a number)")
        return intent, DEFAULT_VALUES[intent]
    raw = raw.strip()
    if intent == QUANTITY:
        number = parse_number(raw)
        if number is None:
            raise ValueError(f"数量 {raw!r} 不是数字 (not a number)")
        return QUANTITY, number
    return intent, raw


def from_digit(digit: str, keymap: Mapping[Any, Any] | None) -> Answer | None:
    """The answer a DTMF *digit* gives under *keymap* (key → intent spec); None when unmapped."""
    if not keymap:
        return None
    digit = str(digit).strip()
    spec = keymap.get(digit)
    if spec is None and digit.isdigit():
        spec = keymap.get(int(digit))
    if spec is None:
        return None
    intent, value = parse_key_action(spec)
    return Answer(intent, value, f"按键{digit}", urgent=intent == EMERGENCY)
