"""Chinese replies → answers: what a resident said (or pressed) becomes an intent and a value.

Intents: ``yes``/``no`` (negation aware: 不需要 is no), ``quantity`` (一个, 两盒, 俩, 5, 十),
``ok``/``needs_help`` (welfare), ``repeat`` (你说什么), ``wrong_person`` (打错了) and ``later``
(现在没空, 晚点再打: the resident asks to be called back).
Pure functions over strings; no speech engine is imported here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

YES, NO, QUANTITY, OK, NEEDS_HELP, REPEAT, WRONG_PERSON, LATER = (
    "yes", "no", "quantity", "ok", "needs_help", "repeat", "wrong_person", "later",
)
INTENTS: tuple[str, ...] = (YES, NO, QUANTITY, OK, NEEDS_HELP, REPEAT, WRONG_PERSON, LATER)
"""Every intent :func:`classify` can return."""

DEFAULT_VALUES: dict[str, Any] = {
    YES: True, NO: False, OK: "ok", NEEDS_HELP: "needs_help", REPEAT: None, WRONG_PERSON: None,
    LATER: None,
}
"""The value an intent carries when the reply gives no other (quantity carries its number)."""

# When one reply holds several intents, the higher one wins: "要两盒" is a quantity rather than a
# bare yes, "需要帮助" is needs_help rather than yes, "不是我" is wrong_person rather than no.
# ``later`` ranks below needs_help ("我不舒服，晚点再打" must reach a grid worker) and above
# everything else: "好的，我现在在忙" asks for a call back, it does not say yes. A later-phrase
# also drops the repeat and no words beside it (see :func:`classify`).
_RANK = (WRONG_PERSON, REPEAT, NEEDS_HELP, LATER, OK, QUANTITY, NO, YES)


@dataclass(frozen=True)
class Answer:
    """One understood reply: ``intent`` (one of :data:`INTENTS`), its ``value``, the ``text`` heard."""

    intent: str
    value: Any
    text: str


# --- the lexicon --------------------------------------------------------------------------------
# Each entry: regex → intents it can mean, most specific first. At each position of the reply the
# longest match wins, so "不需要" is never read as "需要", nor "听不清" as a negation.
_NEG = r"(?:不|没|別|别|甭)(?:太|大|怎么|是很|很|再|用)?"

_LEXICON: list[tuple[str, tuple[str, ...]]] = [
    # wrong person
    (r"打错了?|打错电话|你打错|不是我|我不是(?:他|她|本人)|没有这个人|没这个人|不认识|找错人了?", (WRONG_PERSON, NO)),
    # repeat requests
    (r"你说什么|说什么|说啥|什么意思|听不清楚?|听不见|听不到|没听清楚?|没听见|没听到|再说一遍|再说一次|"
     r"再讲一遍|重复一遍|重复一下|大声一?点|慢一?点说|什么|啥|再说", (REPEAT,)),
    # call me back later (before no: 没空 / 不方便 are not a "no" to the question; before repeat:
    # 等会儿再说 is not 再说). 有事 alone stays needs_help; 现在有事 / 正有事 is busy.
    (r"(?:现在|这会儿?|这阵子?|眼下|目前|暂时|正)?(?:没空|没有空|没时间|没有时间|没工夫|不方便|不得空|忙)|"
     r"(?:现在|这会儿?|眼下|正好?)有事|有点事儿?|"
     r"(?:我|正|正在|还在|在)忙|忙着呢?|忙得很|在开会|开会呢?|在外面|在路上|在上班|在做饭|在吃饭|"
     r"(?:等|过)(?:一)?(?:会儿?|下|阵子?)(?:再|打)|晚(?:一)?点(?:儿)?(?:再|打|说|联系)?|晚些|"
     r"稍后(?:再|打)?|回头(?:再)?(?:打|说)|改天|下次再|以后再|明天再|待会儿?|呆会儿?|一会儿?再|"
     r"(?:再|重新)打过来|再打来|再给我打|再联系我?", (LATER,)),
    # welfare: needs help (before yes/ok: 需要帮助, 不太好)
    (r"需要帮助|需要帮忙|要帮忙|帮帮我|救命|" + _NEG + r"舒服|" + _NEG + r"好受|" + _NEG + r"太好|"
     r"不好|不行了|身体不好|难受|生病了?|病了|头晕|头疼|头痛|疼|痛|摔了?|摔倒了?|发烧|有事|出事了?",
     (NEEDS_HELP,)),
    # welfare: fine
    (r"我很好|很好|挺好的?|蛮好的?|还好|还行|还可以|不错|都好|都挺好|身体好|好着呢|没事|没事儿|没什么事|"
     r"一切都好|一切正常|放心", (OK,)),
    # no (before yes: 不需要, 不要, 不是, 不用了)
    (r"一个都不要|一个也不要|都不要|都不需要|一个都不用|" + _NEG + r"(?:需要|要|是的?|对|行|可以|用了?|想要|必要)|"
     r"没有|没|不了|算了|谢谢不用|不|否", (NO,)),
    # yes
    (r"需要的?|要的|想要|要|有|愿意|当然要?", (YES,)),
    (r"是的|是啊|是我|是|对的?|对啊|没错|没问题|好的|好啊|好|行|可以|嗯+|恩|肯定", (YES, OK)),
]

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "仨": 3, "四": 4,
              "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_MEASURE = r"个|盒|包|只|份|袋|件|片|副|人|口|位|盒子"
_NUM = r"[0-9]+|[零〇一二两三四五六七八九十百]+|俩|仨"
_QUANTITY_RE = re.compile(rf"(?:要|需要|来)?({_NUM})(?:{_MEASURE})?(?:吧|就行|就够了|就好)?")
_PUNCT_RE = re.compile(r"[\s,.!?;:'\"，。！？；：、…~～·\-—()（）\[\]【】<>《》]+")


_LEX_RES = [(re.compile(pattern), intents) for pattern, intents in _LEXICON]


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


def _quantities(text: str) -> list[tuple[int, int, int]]:
    """(start, end, number) of each quantity in *text*."""
    found = []
    for m in _QUANTITY_RE.finditer(text):
        number = parse_number(m.group(1))
        if number is None:
            continue
        whole = m.group(0)
        bare = whole == m.group(1)
        # A bare Chinese numeral counts only when it is the whole reply ("十", "三吧"): "一下",
        # "一点", "一遍" are not quantities.
        if bare and not m.group(1).isdigit() and len(text) > len(whole):
            after = text[m.end():m.end() + 1]
            if after and after not in "吧呀啊":
                continue
        found.append((m.start(), m.end(), number))
    return found


def _candidates(text: str) -> list[tuple[str, Any, bool]]:
    """Every (intent, value, primary) the reply can mean, in order of appearance. A word's first
    intent is primary; the others ("不是我" as a plain no) count only when no primary fits."""
    out: list[tuple[int, str, Any, bool]] = []
    quantities = _quantities(text)
    covered = [False] * len(text)
    for start, end, _number in quantities:
        for i in range(start, end):
            covered[i] = True
    pos = 0
    while pos < len(text):
        best: tuple[int, tuple[str, ...]] | None = None
        for regex, intents in _LEX_RES:
            m = regex.match(text, pos)
            if m and m.end() > pos and (best is None or m.end() > best[0]):
                best = (m.end(), intents)
        if best is None:
            pos += 1
            continue
        end, intents = best
        # A yes-word wholly inside a quantity ("要两盒": the 要 belongs to the quantity) is the
        # quantity's, not a separate yes.
        if not (all(covered[pos:end]) and intents[0] == YES):
            for k, intent in enumerate(intents):
                out.append((pos, intent, DEFAULT_VALUES[intent], k == 0))
        pos = end
    # a quantity spelled inside a longer no-phrase ("一个都不要") is not a quantity
    no_spans = [(m.start(), m.end()) for m in re.finditer(r"一个都不要|一个也不要|一个都不用", text)]
    for start, _end, number in quantities:
        if any(s <= start < e for s, e in no_spans):
            continue
        out.append((start, QUANTITY, number, True))
    out.sort(key=lambda c: c[0])
    return [(intent, value, primary) for _, intent, value, primary in out]


def classify(text: str, expect: Iterable[str] | None = None) -> Answer | None:
    """What *text* answers, among the *expect* intents (all when None); None when nothing fits."""
    clean = normalize(text)
    if not clean:
        return None
    wanted = set(INTENTS if expect is None else expect)
    unknown = wanted - set(INTENTS)
    if unknown:
        raise ValueError(f"unknown intent(s) {sorted(unknown)}; known: {', '.join(INTENTS)}")
    candidates = _candidates(clean)
    # 好的，我在忙 / 什么？现在没空 / 现在不行，晚点打: a call-back request beats yes, no and repeat
    if any(intent == LATER for intent, _, _ in candidates):
        candidates = [c for c in candidates if c[0] not in (YES, NO, REPEAT)]
    # 好的，不需要 ... a negation anywhere beats a yes
    if any(intent == NO for intent, _, _ in candidates):
        candidates = [c for c in candidates if c[0] != YES]
    # 我不舒服 is needs_help, never an "ok" that a bare 好 might suggest
    if any(intent == NEEDS_HELP for intent, _, _ in candidates):
        candidates = [c for c in candidates if c[0] != OK]
    # a quantity of zero is a no; "两个" to a yes/no question means yes
    fixed = []
    for intent, value, primary in candidates:
        if intent == QUANTITY and QUANTITY not in wanted:
            if value == 0:
                intent, value = NO, False
            elif YES in wanted:
                intent, value = YES, True
        fixed.append((intent, value, primary))
    for primary_pass in (True, False):
        for intent in _RANK:
            for cand_intent, value, primary in fixed:
                if primary == primary_pass and cand_intent == intent and intent in wanted:
                    return Answer(intent, value, text)
    return None


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
    return Answer(intent, value, f"按键{digit}")
