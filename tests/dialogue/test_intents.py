"""Chinese replies → intents: every example of the issue, negation, overlap, keys, phrases."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.intents import INTENTS, Answer, classify, from_digit, parse_number, phrases
from tests.conftest import REPLIES, SHARED

YES_NO = ["yes", "no"]
WELFARE = ["ok", "needs_help"]


@pytest.mark.parametrize("text", ["需要", "要", "是", "是的", "好的", "对", "对的", "可以", "嗯", "好",
                                  "需要的", "要的", "没问题", "行", "当然要", "我需要"])
def test_yes(text: str) -> None:
    assert classify(text, YES_NO) == Answer("yes", True, text)


@pytest.mark.parametrize("text", ["不需要", "不要", "不是", "不用了", "不用", "不对", "没有", "不行",
                                  "我不需要", "不太需要", "不需要，谢谢", "好的，不需要", "一个都不要",
                                  "算了", "别要了", "不想要"])
def test_no_and_negation_beats_yes(text: str) -> None:
    assert classify(text, YES_NO) == Answer("no", False, text)
    assert classify(text).intent == "no"


@pytest.mark.parametrize(("text", "n"), [
    ("一个", 1), ("两个", 2), ("两盒", 2), ("三个吧", 3), ("5", 5), ("十", 10), ("俩", 2),
    ("要两盒", 2), ("四个", 4), ("五个", 5), ("需要三盒", 3), ("５个", 5), ("十二个", 12),
    ("二十", 20), ("仨", 3), ("两个吧", 2), ("需要，两个", 2), ("3个", 3), ("就一盒吧", 1),
])
def test_quantity(text: str, n: int) -> None:
    assert classify(text, ["quantity", "no"]) == Answer("quantity", n, text)
    assert classify(text) == Answer("quantity", n, text)


def test_a_quantity_to_a_yes_no_question_is_yes() -> None:
    assert classify("要两盒", YES_NO) == Answer("yes", True, "要两盒")
    assert classify("两个", YES_NO).intent == "yes"


def test_quantity_words_that_are_not_quantities() -> None:
    assert classify("再说一遍").intent == "repeat"
    assert classify("大声一点").intent == "repeat"
    assert classify("一点", ["quantity"]) is None
    assert parse_number("两") == 2 and parse_number("十二") == 12 and parse_number("二十五") == 25
    assert parse_number("abc") is None


@pytest.mark.parametrize("text", ["我很好", "挺好的", "还行", "很好", "还可以", "没事", "都挺好", "不错",
                                  "挺好", "好的，我很好"])
def test_welfare_ok(text: str) -> None:
    assert classify(text, WELFARE) == Answer("ok", "ok", text)
    assert classify(text).intent == "ok"


@pytest.mark.parametrize("text", ["不太好", "不舒服", "我不舒服", "需要帮助", "不好", "身体不好", "我摔倒了",
                                  "有点难受", "我生病了", "不太舒服", "需要帮忙"])
def test_welfare_needs_help(text: str) -> None:
    assert classify(text, WELFARE) == Answer("needs_help", "needs_help", text)
    assert classify(text).intent == "needs_help"


def test_needs_help_overlaps() -> None:
    # 需要帮助 is needs_help, not yes; 不需要帮助 is a plain no; 不太好 is not "ok" via 好
    assert classify("需要帮助", ["yes", "no", "needs_help"]).intent == "needs_help"
    assert classify("不需要帮助", ["yes", "no", "needs_help"]).intent == "no"
    assert classify("不太好", ["ok", "needs_help", "yes"]).intent == "needs_help"
    # a bare 需要 does not mean "I am fine"
    assert classify("需要", WELFARE) is None


@pytest.mark.parametrize("text", ["你说什么", "听不清", "再说一遍", "什么？", "没听清楚", "听不见", "啥"])
def test_repeat(text: str) -> None:
    assert classify(text) == Answer("repeat", None, text)
    # 听不清 holds a 不 but is not a no
    assert classify(text, ["yes", "no", "repeat"]).intent == "repeat"


@pytest.mark.parametrize("text", ["打错了", "不是我", "你打错了", "没有这个人", "我不认识他"])
def test_wrong_person(text: str) -> None:
    assert classify(text, ["yes", "no", "wrong_person"]) == Answer("wrong_person", None, text)


def test_wrong_person_is_a_no_when_not_expected() -> None:
    assert classify("不是我", YES_NO) == Answer("no", False, "不是我")


@pytest.mark.parametrize("text", ["", "   ", "喂", "再见", "[unk]", "广州市房地产中介协会分析", "哈哈"])
def test_nothing_to_understand(text: str) -> None:
    assert classify(text, YES_NO + ["quantity"] + WELFARE) is None


def test_expect_filters_and_rejects_unknown_intents() -> None:
    assert classify("我很好", YES_NO) is None
    assert classify("两个", ["ok"]) is None
    with pytest.raises(ValueError, match="maybe"):
        classify("好", ["maybe"])
    with pytest.raises(ValueError):
        phrases(["maybe"])


def test_asr_tokens_and_punctuation_are_ignored() -> None:
    assert classify("<unk> 不 需要 。").intent == "no"
    assert classify(" 两 个 ！").value == 2


def test_phrases_classify_back_to_their_intents() -> None:
    for intent in INTENTS:
        ps = phrases([intent])
        assert ps, intent
        for p in ps:
            got = classify(p, [intent])
            assert got is not None and got.intent == intent, (intent, p, got)
    mask = phrases(["yes", "no", "quantity"])
    for p in ("需要", "不需要", "两个", "要两盒", "五个"):
        assert p in mask
    assert "六个" not in mask and "六个" in phrases(["quantity"], max_quantity=6)
    assert len(mask) == len(set(mask))


def test_from_digit() -> None:
    keymap = {"1": "yes", "2": "no"}
    assert from_digit("1", keymap) == Answer("yes", True, "按键1")
    assert from_digit("2", keymap) == Answer("no", False, "按键2")
    assert from_digit("9", keymap) is None
    assert from_digit("1", None) is None
    qmap = {1: 1, 2: 2, 3: "quantity=3", "4": "quantity=四"}
    assert from_digit("3", qmap) == Answer("quantity", 3, "按键3")
    assert from_digit("1", qmap).value == 1
    assert from_digit("4", qmap).value == 4
    assert from_digit("1", {"1": "ok", "2": "needs_help"}).value == "ok"
    with pytest.raises(ValueError, match="unknown intent"):
        from_digit("1", {"1": "maybe"})
    with pytest.raises(ValueError):
        from_digit("1", {"1": "quantity"})


def _transcripts() -> dict[str, str]:
    for base in (REPLIES, SHARED / "audio" / "replies"):
        f = base / "transcripts.json"
        if f.is_file():
            return json.loads(f.read_text(encoding="utf-8"))
    pytest.skip("no transcripts.json in callbot/data/replies or ../shared/audio/replies")


def test_every_recorded_reply_text_classifies() -> None:
    expected = {
        "需要": "yes", "不需要": "no", "好的": "yes", "是的": "yes", "不是": "no", "不用了": "no",
        "要": "yes", "不要": "no", "一个": "quantity", "两个": "quantity", "三个": "quantity",
        "四个": "quantity", "五个": "quantity", "要两盒": "quantity", "我很好": "ok",
        "挺好的": "ok", "不太好": "needs_help", "我不舒服": "needs_help", "需要帮助": "needs_help",
        "你说什么": "repeat", "喂": None, "再见": None,
        "我现在没空": "later", "等会儿再打": "later", "我在忙": "later",
    }
    for _stem, text in _transcripts().items():
        got = classify(text)
        assert (got.intent if got else None) == expected[text], text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("不要需是好的对个两三一五十吗我很舒服你说什么打错了，。 5#")),
               max_size=12))
def test_classify_never_fails_and_respects_expect(text: str) -> None:
    for expect in (None, ["yes", "no"], ["quantity", "no"], ["ok", "needs_help"]):
        got = classify(text, expect)
        if got is not None:
            assert got.intent in (expect or INTENTS) and got.text == text
            if got.intent == "quantity":
                assert isinstance(got.value, int) and got.value >= 0


@pytest.mark.parametrize("word", ["需要", "要", "是", "对", "用", "想要"])
@pytest.mark.parametrize("prefix", ["不", "我不", "不太", "还是不", "好的，不"])
def test_a_negated_yes_is_never_yes(word: str, prefix: str) -> None:
    got = classify(prefix + word, ["yes", "no"])
    assert got is not None and got.intent == "no", (prefix + word, got)
