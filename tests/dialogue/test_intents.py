"""Chinese replies → intents: every example of the issue, negation, overlap, keys, phrases."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.intents import INTENTS, Answer, classify, from_digit, parse_number, phrases
from tests.conftest import REPLIES, REPO, SHARED

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


@pytest.mark.parametrize("text", ["不太好", "不舒服", "我不舒服", "需要帮助", "不好", "身体不好",
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
        "我摔了一跤站不起来": "emergency", "我要找人工": "human",
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
    if prefix + word == "还是不是":  # also "is it or not?": a question back, no answer at all
        assert got is None
        return
    assert got is not None and got.intent == "no", (prefix + word, got)


# --- free replies (issue 9): every intent beyond the phrases a prompt offers ---------------------

@pytest.mark.parametrize(("text", "intent"), [
    ("救命啊", "emergency"), ("我摔了一跤站不起来", "emergency"), ("心口疼", "emergency"),
    ("透不过气", "emergency"), ("快叫救护车", "emergency"), ("打120", "emergency"),
    ("我要人工", "human"), ("找真人", "human"), ("让社区的同志给我回电话", "human"),
    ("别老打电话来", "stop"), ("我不想接这种电话", "stop"), ("不要再打了", "stop"),
    ("还凑合", "ok"), ("身体硬朗着呢", "ok"), ("膝盖疼得厉害", "needs_help"),
    ("最近老睡不着", "needs_help"), ("暂时不缺", "no"), ("给我留两盒", "quantity"),
    ("我在做饭，等会儿再说", "later"), ("你说啥我没听清", "repeat"), ("这里没有这个人", "wrong_person"),
])
def test_free_phrasings(text: str, intent: str) -> None:
    got = classify(text)
    assert got is not None and got.intent == intent, (text, got)
    assert got.urgent == (intent == "emergency")


def test_emergency_beats_everything_and_is_needs_help_where_only_that_is_asked() -> None:
    assert classify("还好，就是摔了一跤站不起来").intent == "emergency"
    got = classify("我摔倒了", ["ok", "needs_help"])
    assert (got.intent, got.value, got.urgent) == ("needs_help", "needs_help", True)
    assert classify("别再打了，我不需要").intent == "stop"


@pytest.mark.parametrize(("pinyin", "intent", "value"), [
    ("yào bù yào děng", "yes", True),        # 要的要的 as the transducer hears it: not 不要
    ("zì hé ba", "quantity", 4),             # 四盒吧: s heard as z
    ("lái yù hé jiù xíng", "quantity", 1),   # 来一盒就行: 一 heard as yù before a measure word
    ("jiù yào liǎng gèng", "quantity", 2),   # 两个 with the model's added nasal
    ("wǒ yào zhǎo yuán gōng", "human", None),  # 人工 heard as 员工
    ("wǒ tīng kǒu téng tòu bù guò qù", "emergency", "needs_help"),  # 心口疼 heard as tīng kǒu
    ("hǎo děng", "yes", True),               # 好的 with a stray nasal
])
def test_the_recognisers_known_slips_are_forgiven(pinyin: str, intent: str, value) -> None:
    got = classify("", pinyin=pinyin)
    assert got is not None and (got.intent, got.value) == (intent, value), (pinyin, got)


@pytest.mark.parametrize("pinyin", [
    "wǒ xiǎng wèn wǒ zài bīn hǎi xìng qū yǒu fáng",   # 我想问我在滨海新区有房 (a real recording)
    "guǎng zhōu shì fǎ dì chǎn zhōng jiè xié huì fēi jī",
    "zhè gè jiù suàn le ba",                          # 吧 is not 八: a no, never a quantity
])
def test_near_sounds_are_not_answers(pinyin: str) -> None:
    got = classify("", pinyin=pinyin)
    assert got is None or got.intent == "no", (pinyin, got)
    assert got is None or pinyin.startswith("zhè")


@pytest.mark.parametrize("text", [
    "那天我去菜市场买菜，卖菜的跟我说这个白菜不要钱，我就拿了两棵回来了",
    "今天上午，市政府召开新闻发布会，介绍了城市交通建设的最新进展",
    "老李啊，你家孙子考上大学了没有，听说学习可好了",
    "我跟你说过多少次了，这件事情你别管，听见没有",
    "我年轻的时候在纺织厂上班，一干就是三十年，那时候日子苦啊",
    "你把门关上，外面风大，别让猫跑出去了",
    "要不要钱",  # a question back is not a no
])
def test_other_talk_answers_nothing(text: str) -> None:
    assert classify(text) is None, (text, classify(text))


def test_typed_and_heard_replies_use_one_classifier() -> None:
    from callbot import pinyin as py

    for text in ("我不舒服，晚点再打", "要两盒", "不需要", "还凑合", "救命"):
        heard = py.to_string(py.from_text(text))
        typed, spoken = classify(text), classify("", pinyin=heard)
        assert typed is not None and spoken is not None, text
        assert (typed.intent, typed.value, typed.urgent) == (spoken.intent, spoken.value,
                                                             spoken.urgent), text
    assert classify("5盒").value == 5 and classify("12个").value == 12


@pytest.mark.parametrize("heard, want", [
    ("dàn shí bù tiān", ("no", False)),  # 暂时不缺, sped up on a noisy line: z → d, q → t
    ("zàn shí bù quē", ("no", False)),
])
def test_an_affricate_heard_as_its_stop_on_a_noisy_line(heard: str, want) -> None:
    got = classify("", pinyin=heard)
    assert got is not None and (got.intent, got.value) == want, (heard, got)


def test_lexicon_phrases_classify_back() -> None:
    """Every phrase written out in the lexicon, and every 7th phrase a family expands to (all
    ~3,200 of them take minutes on a loaded box; a step prime to the slot sizes, so each word of
    a slot is tried in some phrase), answers its own intent."""
    from importlib import resources

    import yaml

    from callbot.intents import lexicon

    data = yaml.safe_load(resources.files("callbot").joinpath("data/lexicon.yaml")
                          .read_text(encoding="utf-8"))
    written = {str(raw).partition("|")[0].strip() for phrases in data["intents"].values()
               for raw in phrases if "{" not in str(raw)}
    family = 0
    for e in lexicon().entries:
        if not e.intents or e.chars in lexicon().weak:
            continue
        if e.chars not in written:
            family += 1
            if family % 7:
                continue
        got = classify(e.chars, e.intents[:1])
        assert got is not None and got.intent == e.intents[0], (e.chars, e.intents, got)


@pytest.mark.parametrize("heard, want", [
    ("yòng? mìng àn?", "emergency"),  # 救命啊 on a noisy line: 救 heard as an unsure 用
    ("jiù mìng? a", "emergency"),  # 命 unclear
    ("wǒ shuāi? le yī jiāo", "emergency"),  # heard clearly enough anyway
    ("yòng mìng àn", None),  # the same, heard surely: nothing (用命 is no cry for help)
    ("nà dāng rán zhī? dào le?", None),  # 摔倒了 would rest on two unclear syllables
    ("hǎo? le", "yes"),  # 摔了 through an unclear 好 and a particle: no, a yes as heard
    ("lái yī? hé jiù xíng? dòng?", "quantity"),  # understood at first: no second reading
    ("jīn tiān wǒ qù mǎi cài, mài? mìng de rén hěn duō, dà jiā dōu zài pái duì", None),
])
def test_an_unclear_syllable_may_be_read_as_the_emergency_it_could_be(heard: str, want) -> None:
    """The recogniser marks syllables it was unsure of ("yòng?"); when nothing is understood,
    one of them may stand for a syllable of an emergency phrase whose other syllables were heard
    surely, if that reading explains the reply (a short cry, not one word in a long story)."""
    got = classify("", pinyin=heard.replace(",", ""))
    assert (got.intent if got else None) == want, (heard, got)
    if want == "emergency":
        assert got is not None and got.urgent and got.value == "needs_help"
    welfare = classify("", ["ok", "needs_help", "later"], pinyin=heard.replace(",", ""))
    if want == "emergency":  # a question that listens for needs_help only: still urgent
        assert welfare is not None and welfare.intent == "needs_help" and welfare.urgent


def test_unsure_marks_round_trip() -> None:
    from callbot import pinyin as py

    syls = py.from_text("救命啊")
    text = py.to_string(syls, {0, 2})
    assert text == "jiù? mìng a?" and py.from_string(text) == syls
    assert py.unsure_of(text) == {0, 2} and py.unsure_of(py.to_string(syls)) == frozenset()


# --- the lexicon's families (issue 9, widened): how residents really talk ----------------------
# Phrasings written for these tests, not taken from the free set's held-out parts.

FAMILIES: dict[str, list[str]] = {
    "emergency": ["胸口疼", "心口痛得厉害", "胸口闷得慌", "心脏疼得受不了", "我胸口好疼", "心脏难受得不行",
                  "喘不上来气", "呼吸困难", "我摔跤了", "我滑倒了", "在厕所摔倒了", "我腿摔断了",
                  "我起不来床了", "半边身子动不了", "胸闷得厉害", "我不行了快来人", "我在厨房摔倒了"],
    "needs_help": ["我肚子疼", "腿疼得走不了", "最近老咳嗽", "咳得厉害", "我发烧了", "发高烧", "头晕得厉害",
                   "我头有点晕", "血压又高了", "血压上来了", "拉肚子", "嗓子疼", "牙疼得受不了",
                   "我这腰疼得不行", "腿疼了好几天了", "老咳嗽，晚上睡不好", "我眼睛看不清",
                   "家里水管漏水了", "灯坏了没人修", "帮我买点菜", "想请人帮我买药", "没人做饭",
                   "需要人照顾", "药快吃完了"],
    "ok": ["好着呢", "都好好的", "身体还不错", "没什么问题", "我好多了", "已经好了", "不用惦记", "别挂念",
           "身体棒着呢", "吃得香睡得好", "挺好，谢谢关心", "还是老样子，挺好", "我好着呢不用惦记"],
    "repeat": ["没听明白", "听不明白", "我没听懂", "你说的啥", "你再说一遍", "麻烦再说一次", "听不太清楚",
               "声音太小了", "你讲慢点", "我耳朵背听不清", "没听明白你的意思", "听不懂你说的"],
    "no": ["谢谢不用", "谢谢不要了", "不要了谢谢", "不用了谢谢你", "不用了，谢谢啊", "我们不要", "不用麻烦了",
           "不需要了", "家里够用", "用不上", "暂时用不着", "不用送了", "谢谢了不用"],
    "yes": ["要的呀", "好呀", "行行行", "可以呀", "是的需要"],
    "stop": ["不要再打来了", "别打来了", "以后别打电话了", "别再给我打电话了", "以后不要再打过来了",
             "你们别再打了", "不要再打这个电话了"],
    "later": ["明天再打过来", "过会儿再打", "我在外头呢", "等一下再说", "下午打过来吧", "过两天再联系",
              "我在外面买菜呢，等会儿再打"],
    "human": ["让居委会的人给我回电话", "找个人跟我说", "叫社区的人来", "让网格员给我打电话", "叫工作人员来"],
    "wrong_person": ["号码打错了", "没这个人", "这不是他家", "他早搬走了", "你打错电话了"],
}


@pytest.mark.parametrize(("text", "intent"), [(t, i) for i, ts in FAMILIES.items() for t in ts])
def test_the_lexicons_families(text: str, intent: str) -> None:
    got = classify(text)
    assert got is not None and got.intent == intent, (text, got)
    assert got.urgent == (intent == "emergency")


@pytest.mark.parametrize("text", ["谢谢，不要了", "不要了", "谢谢你们，不用了", "我们家不要了，谢谢"])
def test_a_polite_refusal_is_a_no_not_a_stop(text: str) -> None:
    """谢谢不要了 declines the offer; it does not put the number on the do-not-call list."""
    assert classify(text, ["yes", "no", "quantity", "stop", "later"]) == Answer("no", False, text)


@pytest.mark.parametrize("text", ["胸口疼得受不了", "我心口疼得厉害", "心脏闷得难受"])
def test_chest_pain_said_strongly_is_still_an_emergency(text: str) -> None:
    """The longer 'body part + 疼得…' complaint must not hide the chest in it."""
    got = classify(text, ["ok", "needs_help"])
    assert got is not None and (got.intent, got.urgent) == ("needs_help", True), got
    assert classify(text).intent == "emergency"


@pytest.mark.parametrize("text", [
    "隔壁老王家的猫生了一窝小猫",  # "shēng le" is no 摔了 in a long story
    "她说她女儿明天下午回来看她",  # 回来 is no 打来
    "我们那时候哪有什么电话，写信都要好几天",  # a lone 要 in a long sentence is no yes
    "孙子下个月要回来过年了", "专家提醒老年人冬天要注意保暖", "我们小区门口新开了一家超市，东西挺便宜",
    "我闺女在上海上班，一年回来一次", "这个电视剧演得真好看，我天天看", "广场舞跳完了我们就去公园遛弯",
])
@pytest.mark.parametrize("expect", [None, ["yes", "no", "quantity", "later", "emergency", "human",
                                           "stop", "repeat", "wrong_person"],
                                    ["ok", "needs_help", "later", "emergency", "human", "stop"]])
def test_more_other_talk_answers_nothing(text: str, expect) -> None:
    assert classify(text, expect) is None, (text, classify(text, expect))


@pytest.mark.parametrize(("text", "intent"), [
    # the families, in phrasings no test clip says
    ("行，要的", "yes"), ("可以，我需要", "yes"), ("嗯，给我留着", "yes"),
    ("不用，家里还有", "no"), ("我家有的是", "no"), ("谢谢不用，够用了", "no"),
    ("女儿天天来看我", "ok"), ("老伴照顾我", "ok"), ("孩子们都在身边", "ok"),
    ("能不能让人工接电话", "human"), ("可不可以让真人来接电话", "human"),
    ("能不能帮我买药", "needs_help"), ("能不能过一会儿再打", "later"),
    # and what turns them round: a 不 inside is heard, being alone is no "fine"
    ("好的呀，我不要", "no"), ("孩子不来看我", "needs_help"),
    # a 没 heard surely turns them round too (家里没人照顾我 was 家里人照顾我 = fine with a 没 put in)
    ("家里没人照顾我", "needs_help"), ("孩子没来看过我", "needs_help"),
])
def test_the_reply_families(text: str, intent: str) -> None:
    got = classify(text)
    assert got is not None and got.intent == intent, (text, got)


@pytest.mark.parametrize(("text", "pinyin", "intent"), [
    ("家里没人照顾我", "jiā lǐ méi rén zhào gù wǒ", "needs_help"),  # 没 heard surely: no one
    ("好着呢", "hǎo zhe méi?", "ok"),  # 着呢 slowed, its 呢 heard as an unsure 没: still fine
    ("没什么事，都挺好", "méi shén me shì dōu tǐng hǎo", "ok"),  # a 没 the phrase itself says
])
def test_a_negation_is_told_by_how_surely_it_was_heard(text: str, pinyin: str, intent: str) -> None:
    got = classify(text, pinyin=pinyin)
    assert got is not None and got.intent == intent, (text, pinyin, got)


@pytest.mark.parametrize("text", ["别给我拿了", "别给我留着了", "不要给我留了", "以后别给我送了"])
def test_a_refusal_of_the_offer_is_no_stop_without_a_call_word(text: str) -> None:
    """别给我拿了 ("do not bring me any") is one syllable from 别给我打了 (do not call me): it was
    taken as stop, which puts the resident on the do-not-call list. A stop phrase now counts only
    where one of its call words (打, 电话, 骚扰, 联系, 烦, 删 …) is heard closely."""
    got = classify(text)
    assert got is not None and (got.intent, got.value) == ("no", False), (text, got)


@pytest.mark.parametrize("text", ["别给我打了", "别再给我打电话了", "以后别打过来了", "别烦我",
                                  "别骚扰我了", "把我的号码删了", "拉黑"])
def test_a_request_not_to_be_called_is_still_stop(text: str) -> None:
    got = classify(text)
    assert got is not None and got.intent == "stop", (text, got)


def test_a_bie_before_what_is_wanted_is_no_yes() -> None:
    """别再给我留了 was read as 好给我留着 (a yes) with the 好 missing, the 别再 before it left out."""
    got = classify("别再给我留了")
    assert got is None or got.intent == "no", got
    assert classify("给我留着") == Answer("yes", True, "给我留着", pinyin="gěi wǒ liú zhe")


@pytest.mark.parametrize(("pinyin", "want"), [
    ("jiù? hé ba", None),         # 四盒吧 sped up: an unsure 九 off its tone (jiǔ) is asked again
    ("jiù? gè", None),
    ("jiǔ hé", ("quantity", 9)),  # heard surely: nine
    ("jiù hé", ("quantity", 9)),  # off its tone but sure: nine
    ("sì? hé", ("quantity", 4)),  # unsure but in its own tone: four
    ("yī? hé", ("quantity", 1)),  # 一 takes any of its sandhi tones
    ("qī? hé", ("quantity", 7)),
])
def test_a_doubtful_number_is_asked_again(pinyin: str, want) -> None:
    got = classify("", pinyin=pinyin)
    assert ((got.intent, got.value) if got else None) == want, (pinyin, got)


@pytest.mark.parametrize("text", ["家里还有好几盒", "还有好几个呢", "不用，还有好多呢", "家里还有好多呢"])
def test_plenty_left_is_a_no_not_fine_nor_a_number(text: str) -> None:
    """有好多 / 有好几 say how many are left: 还有好多呢 was 好着呢 (fine) with a slip, 家里还有好几盒 a
    quantity of 七 (几 heard as 七) — a resident who has plenty kept as wanting seven."""
    got = classify(text)
    assert got is not None and (got.intent, got.value) == ("no", False), (text, got)


@pytest.mark.parametrize("text", ["我好多了", "身体好多了"])
def test_much_better_is_still_fine(text: str) -> None:
    got = classify(text)
    assert got is not None and got.intent == "ok", (text, got)


@pytest.mark.parametrize(("text", "want"), [
    ("还行吧", "ok"), ("还好吧", "ok"),     # fine, not a yes (行吧 / 好吧)
    ("不要紧，挺好的", "ok"), ("不要紧", "ok"), ("问题不大", "ok"),  # 不要紧 is not 不要 (no)
    ("腰疼，不要紧", "needs_help"),  # a complaint heard clearly still wins over the reassurance
    ("膝盖疼得厉害，不过不要紧", "needs_help"),
])
def test_a_reassurance_is_fine_but_never_outweighs_a_clear_complaint(text: str, want: str) -> None:
    got = classify(text)
    assert got is not None and got.intent == want, (text, got)


@pytest.mark.parametrize("pinyin", [
    "lǎo máo bìng le bú yào qù tǐng hǎo de",  # 老毛病了，不要紧，挺好的 slowed: 1.6 off 老毛病又犯了
    "lǎo máo bìng le tǐng hǎo de",
])
def test_a_clear_fine_beside_a_complaint_only_guessed_at_is_asked_again(pinyin: str) -> None:
    """A longer complaint found only more than a slip off (老毛病又犯了 for "lǎo máo bìng le"),
    beside a 挺好的 heard exactly: it was needs_help; neither is sure, so the reply is asked again.
    The complaint said as such is still needs_help."""
    assert classify("", pinyin=pinyin) is None, classify("", pinyin=pinyin)
    said = classify("老毛病又犯了，不过挺好的")
    assert said is not None and said.intent == "needs_help", said


def test_a_short_phrase_read_only_through_a_doubted_slip_is_asked_again() -> None:
    """九盒 sped up and noisy is heard "yǒu sǐ?": two slips from 有事 (needs_help), one of them on
    the syllable the recogniser marked unsure. It was needs_help; it is asked again. The same
    syllables heard surely are still 有事."""
    assert classify("", pinyin="yǒu sǐ?") is None
    for sure in ("yǒu sǐ", "yǒu shì"):
        got = classify("", pinyin=sure)
        assert got is not None and got.intent == "needs_help", (sure, got)


@pytest.mark.parametrize(("pinyin", "want"), [
    # 让社区的人跟我说吧 sped up: 中午再说吧 without its 再 and 午 heard as 我 — two different slips
    ("yào? shè qū de yán zhōng? wǒ shuō ba", None),
    ("zhōng wǔ zài shuō ba", "later"),             # said: a call back at noon
    ("zhōng wǔ shuō ba", "later"),                 # 再 missing, the rest heard closely: still later
    ("wǒ dú zi téng le hǎo jǐ tiān le", "needs_help"),  # 肚子又疼了: 又 missing, a tone off
])
def test_a_phrase_missing_a_syllable_and_slipped_in_another_is_no_match(pinyin: str, want) -> None:
    got = classify("", pinyin=pinyin)
    assert (got.intent if got else None) == want, (pinyin, got)


_WELFARE_Q = ["ok", "needs_help", "later", "emergency", "human", "stop", "repeat"]
_OFFER_Q = ["yes", "no", "quantity", "later", "emergency", "human", "stop", "repeat", "wrong_person"]


@pytest.mark.parametrize(("text", "expect", "intent"), [
    # a fall said with where from (a place set × a fall-verb set), no 摔倒 in it
    ("我从床上摔下来了", _WELFARE_Q, "emergency"), ("从楼梯上滚下来了", _WELFARE_Q, "emergency"),
    ("从椅子上掉下来了", _WELFARE_Q, "emergency"), ("在浴室里跌了", _WELFARE_Q, "emergency"),
    ("从凳子上摔下来了", _WELFARE_Q, "emergency"),
    # a complaint denied (没什么 / 没有哪里 before it) is fine, not needs_help
    ("没什么不舒服的", _WELFARE_Q, "ok"), ("没有哪里不舒服", _WELFARE_Q, "ok"), ("没哪儿疼", _WELFARE_Q, "ok"),
    ("没有哪儿难受，挺好的", _WELFARE_Q, "ok"), ("身上没哪里疼", _WELFARE_Q, "ok"),
    ("不怎么疼了，挺好", _WELFARE_Q, "ok"),
    # fine through family phoning (天天给我打电话 is no stop)
    ("儿子天天给我打电话", _WELFARE_Q, "ok"), ("女儿经常打电话过来", _WELFARE_Q, "ok"),
    # a yes said as a lack, a no said as a supply kept
    ("正好缺这个", _OFFER_Q, "yes"), ("我家正缺呢", _OFFER_Q, "yes"), ("正好没有了", _OFFER_Q, "yes"),
    ("我存着好几盒", _OFFER_Q, "no"), ("囤了不少", _OFFER_Q, "no"),
])
def test_phrasings_built_from_the_lexicons_sets(text: str, expect, intent: str) -> None:
    """Stop 19 (#9): new phrasings, written for this test, not taken from any recorded set."""
    got = classify(text, expect)
    assert got is not None and got.intent == intent, (text, got)


@pytest.mark.parametrize("text", ["没什么不舒服的", "没有哪里疼"])
def test_a_denied_complaint_with_a_fresh_complaint_is_still_needs_help(text: str) -> None:
    """The denial covers only what it precedes: 但是腰疼 after it is still a complaint."""
    got = classify(text + "，就是腰疼", _WELFARE_Q)
    assert got is not None and got.intent == "needs_help", got


@pytest.mark.parametrize(("text", "n"), [("能给五盒吗", 5), ("能给我一盒吗", 1), ("请给我三盒", 3)])
def test_a_quantity_asked_for_in_a_question_is_that_quantity(text: str, n: int) -> None:
    assert classify(text, _OFFER_Q) == Answer("quantity", n, text)


@pytest.mark.parametrize(("text", "intent"), [
    ("我一个人住，买东西不方便", "needs_help"), ("一个人上下楼不方便", "needs_help"),
    ("一个人买东西挺费劲", "needs_help"), ("眼睛看东西模糊", "needs_help"),
    ("刚从公园散步回来", "ok"), ("刚遛弯回来", "ok"),
])
def test_a_hard_daily_task_is_needs_help_and_a_walk_just_taken_is_fine(text: str, intent: str) -> None:
    got = classify(text, _WELFARE_Q)
    assert got is not None and got.intent == intent, (text, got)


@pytest.mark.parametrize("text", ["我没出去遛弯", "没去公园锻炼", "好久没出去遛弯了"])
def test_a_walk_not_taken_is_no_fine(text: str) -> None:
    """没出去遛弯 must not be read as a routine kept with its 没 lost."""
    got = classify(text, _WELFARE_Q)
    assert got is None or got.intent != "ok", (text, got)


@pytest.mark.parametrize("pinyin", ["bù yòng le wǒ ér zi gěi wǒ mǎi guò le",
                                    "wǒ? yǒu le? wǒ ér zi gěi wǒ mǎi guò le"])
def test_a_word_heard_exactly_is_no_number_it_sounds_like(pinyin: str) -> None:
    """儿子 "ér zi" is aligned with 二只 at no cost (tones forgiven, zi for zhi): 不用了，我儿子给我
    买过了 was kept as two masks — the lead's blind set (stop 19), sped up and slowed. A word of no
    intent heard exactly, tones too, now outweighs the loosely heard number; 二只 said is still 2."""
    got = classify("", _OFFER_Q, pinyin=pinyin)
    assert got is not None and got.intent == "no", got
    assert classify("", _OFFER_Q, pinyin="èr zhī") == Answer("quantity", 2, "", pinyin="èr zhī")


def test_a_word_heard_with_another_tone_does_not_count() -> None:
    """Only an exact hearing makes the word: "èr zi" (二's own tone) is still read as a number."""
    got = classify("", _OFFER_Q, pinyin="èr zi")
    assert got is not None and (got.intent, got.value) == ("quantity", 2), got


@pytest.mark.parametrize("text", ["我不想再接到你们的电话", "我不愿意接这种电话", "再也不想接你们的电话"])
def test_not_wanting_to_receive_the_calls_is_a_stop(text: str) -> None:
    """接到 was aligned with 跌倒 ("diē dǎo"): 我不想再接到你们的电话 was an urgent fall (the lead's
    third set, all three voices). Not wanting to receive the calls is a stop, as 别打了 is."""
    assert classify(text, _OFFER_Q) == Answer("stop", None, text, pinyin=classify(text).pinyin)
    assert classify(text, _WELFARE_Q).intent == "stop"


# --- hear-b (stop 20): the offer's answers and the call-control intents, written by families ------

_HEAR_B_FAMILIES = [
    # yes: put me down for it, bring it / I fetch it, how many may I have, a household size
    ("那行，你们给我登记上吧", "yes", True), ("帮我登记一下", "yes", True), ("算我一个", "yes", True),
    ("你们送过来吧", "yes", True), ("给我送上门", "yes", True), ("我需要口罩", "yes", True),
    ("要口罩", "yes", True), ("能给几盒", "yes", True), ("我家三口人", "yes", True),
    ("我们家五口人", "yes", True), ("我也要", "yes", True), ("那太好了", "yes", True),
    # no: already seen to, plenty, no use for it, leave it to others
    ("孩子给我买了", "no", False), ("单位发过了", "no", False), ("我自己买好了", "no", False),
    ("社区上次发过了", "no", False), ("有好几个", "no", False), ("家里还有好几盒", "no", False),
    ("我们有好多", "no", False), ("口罩我这里多的是", "no", False), ("我不怎么出门，不需要", "no", False),
    ("留给别人吧", "no", False), ("给更需要的人吧", "no", False), ("别麻烦了", "no", False),
    ("暂时还够", "no", False), ("上次发的还没用完", "no", False), ("有口罩", "no", False),
    # quantity: a number asked for in a question, said with its measure word
    ("可以给我两盒吗", "quantity", 2), ("能要两盒吗", "quantity", 2), ("给三盒行不行", "quantity", 3),
    ("一家三口，要三盒", "quantity", 3),
    # stop: pestered, take me off the list
    ("烦不烦啊，天天打", "stop", None), ("把我从名单上删掉", "stop", None),
    ("把我的电话删了", "stop", None), ("再打我就报警了", "stop", None), ("一天打好几遍", "stop", None),
    # later: a time to call back, busy right now
    ("吃完饭再说", "later", None), ("等我忙完再说", "later", None), ("七点以后再打", "later", None),
    ("过半个小时再打", "later", None), ("我马上要出门", "later", None), ("等一下，我在炒菜", "later", None),
    ("这会儿忙", "later", None), ("我一会儿给你回过去", "later", None), ("明天吧", "later", None),
    ("下班以后打给我", "later", None),
    # repeat: a poor line, what was just said, who is calling
    ("声音断断续续的", "repeat", None), ("信号不太好", "repeat", None), ("你刚才说的什么", "repeat", None),
    ("什么口罩？", "repeat", None), ("你找谁啊", "repeat", None),
    # wrong_person: none of that name here, the one called has died, not a home, a new owner
    ("这里没有姓王的", "wrong_person", None), ("她去世了", "wrong_person", None),
    ("我妈前年就去世了", "wrong_person", None), ("他已经不在了", "wrong_person", None),
    ("你找谁？这是公司的电话", "wrong_person", None), ("我们这儿是饭店", "wrong_person", None),
    ("这个号码换人了", "wrong_person", None), ("这号码我刚买的", "wrong_person", None),
]


@pytest.mark.parametrize(("text", "intent", "value"), _HEAR_B_FAMILIES)
def test_hear_b_offer_and_call_control_families(text: str, intent: str, value) -> None:
    """Ways residents say yes / no / how many / stop / later / repeat / wrong_person that the
    lexicon did not know (stop 20, hear-b): each is one of a family of sets and composed phrases
    in lexicon.yaml, heard the same at the mask question and over every intent."""
    for expect in (_OFFER_Q, None):
        got = classify(text, expect)
        assert got is not None and (got.intent, got.value) == (intent, value), (text, expect, got)


@pytest.mark.parametrize("text", ["可以给我两盒吗", "能要两盒吗", "行，能给我三盒吗"])
def test_hear_b_a_number_said_is_no_slip_inside_a_yes_phrase(text: str) -> None:
    """可以给我两盒吗 was 可以给我留着 (a yes, the number lost) heard loosely across an exact 两盒: a
    phrase heard only loosely over a number said with its measure word, that does not say the
    number, is not kept."""
    got = classify(text, _OFFER_Q)
    assert got is not None and got.intent == "quantity", (text, got)


@pytest.mark.parametrize("text", ["有好几个", "还有不少", "家里有很多"])
def test_hear_b_having_plenty_is_a_no_not_a_yes(text: str) -> None:
    """有好几个 was a yes (有) with 好几 a filler: 有 + how many says plenty, a no."""
    assert classify(text, _OFFER_Q) == Answer("no", False, text, pinyin=classify(text).pinyin)


@pytest.mark.parametrize("pinyin", ["yǒu hào jǔ gē", "yǒu hǎo qǔ gè ne", "hái yǒu hǎo qī hé"])
def test_hear_b_several_heard_as_a_numeral_is_no_number(pinyin: str) -> None:
    """好几 slipped to "hào jǔ" / "qǔ" / "qī" after a 有 is still "several": no nine or seven boxes."""
    got = classify("", _OFFER_Q, pinyin=pinyin)
    assert got is None or got.intent != "quantity", (pinyin, got)


def test_hear_b_an_unsure_bare_numeral_after_other_words_is_asked_again() -> None:
    """"néng? wǔ?" at the end of 有好几个呢 sped up was five boxes (a bare 五 in its own tone, but
    unsure, outranking the no): not guessed. A sure one, or one said alone, still counts."""
    assert classify("", _OFFER_Q, pinyin="yǒu hào jǔ gē néng? wǔ?") is None
    assert classify("", _OFFER_Q, pinyin="yào wǔ").value == 5
    assert classify("", _OFFER_Q, pinyin="wǔ?").value == 5


def test_hear_b_a_lone_yes_heard_in_another_tone_inside_talk_is_no_answer() -> None:
    """"yòu" (又) is one tone from 有 (a yes): inside a longer reply it is a word of the talk, not
    an answer; 有 said alone, or with its own tone, still is."""
    assert classify("", _OFFER_Q, pinyin="tā yòu lái le ma") is None
    assert classify("", _OFFER_Q, pinyin="yǒu").intent == "yes"
    assert classify("", _OFFER_Q, pinyin="yòu") is not None


@pytest.mark.parametrize(("text", "expect", "want"), [
    ("我不行了", _WELFARE_Q, "needs_help"), ("我身体不行了", _WELFARE_Q, "needs_help"),
    ("我老伴晕倒了", _WELFARE_Q, "emergency"), ("老人晕倒了", _WELFARE_Q, "emergency"),
    ("她摔倒了", _OFFER_Q, "emergency"), ("我老伴晕倒了", _OFFER_Q, "emergency"),
])
def test_hear_b_the_new_families_swallow_no_trouble(text: str, expect, want: str) -> None:
    """The families are long and loosely matched: none may hide a complaint or an emergency
    (我不姓王 was left out: 我不行了 was one tone and a syllable from 我不姓罗; 老伴 is no one who
    died: 我老伴晕倒了 slowed is "…yīng? dào le", and 领到了 is out of the 'already given' set)."""
    got = classify(text, expect)
    assert got is not None and got.intent == want, (text, got)


@pytest.mark.parametrize("text", [
    "我跟你说，我们楼下那家店的菜不要钱，可便宜了", "下面播放一段广告，买二送一",
    "老头子，你把那个遥控器给我拿过来", "小明，别玩手机了，快写作业", "他们家那个孩子要三个月才回来",
    "昨天我去医院排了两个小时的队", "我孙女今年三岁了", "你先去把衣服收一下，要下雨了",
    "楼上那家又在装修，吵死了", "这个电视剧真好看，我天天看", "她说她女儿明天下午回来看她",
])
def test_hear_b_other_talk_in_the_room_is_no_answer(text: str) -> None:
    """A story, the television, or talk to someone else in the room: no answer to the offer."""
    assert classify(text, _OFFER_Q) is None, (text, classify(text, _OFFER_Q))


def test_hear_b_a_reply_reads_the_same_in_every_process() -> None:
    """The lexicon's candidates came in the order of a set of syllable keys, so two equally good
    readings were chosen by the process's hash seed: 不用了，我儿子给我买过了 heard "bù yòng lún? …"
    was a no in one bench run and asked again in the next. Candidates now come in lexicon order."""
    import os
    import subprocess
    import sys

    code = ("from callbot import intents; print(intents.classify('', pinyin='bù yòng lún? wǒ ér zi "
            "gěi wǒ mǎi guò le'), intents.classify('', pinyin='yǒu hào qǔ gē? néng'))")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
            for seed in range(3)}
    assert len(seen) == 1, seen
# --- stop 20 (hear-a): welfare replies by family, written for these tests (not from a recorded set)

_FAMILIES_20 = {
    "ok": [
        "我每天都出去遛弯", "天天去公园打太极", "每天早上去公园锻炼", "闺女每个礼拜都来", "儿子周末回来看我",
        "孙子天天给我打电话", "腿脚还利索", "身子骨还硬朗", "眼睛还行，耳朵也还好使", "胃口也不错",
        "吃饭挺香，晚上睡得也踏实", "血压挺稳的", "血糖控制得不错", "药按时吃着", "能自己做饭",
        "生活能自理", "老样子，还那样", "还过得去", "没得事，好着嘞", "日子过得挺好", "一切都挺好",
    ],
    "needs_help": [
        "血糖有点高，要打胰岛素", "血压又高了", "尿酸偏高", "关节炎又犯了", "有高血压", "骨质疏松，腰疼",
        "要去医院复查，没人陪我去", "身边没人照顾", "一个人在家，挺孤单的", "咳嗽一直没好",
        "老不见好", "最近老忘事", "身上痒得很", "退休金不够花", "看不起病", "得打针", "晚上睡不踏实",
        "腿肿了",
    ],
    "emergency": [
        "我老伴晕过去了，叫不醒", "我老伴叫不醒了", "老头倒在地上了", "她没反应了", "家里有煤气味",
        "闻到煤气味了", "天然气漏了", "厨房着火了", "头磕破了，流了好多血", "血流不止",
        "我在卫生间摔倒了，腿动不了", "半边身子动不了", "浑身动不了", "气上不来", "突然说不出话了",
        "胸口压得慌",
    ],
}


@pytest.mark.parametrize(("text", "intent"), [(t, i) for i, ts in _FAMILIES_20.items() for t in ts])
def test_welfare_families_of_stop_20(text: str, intent: str) -> None:
    """Routines, a body part still working, meals and sleep, readings kept in check, doing for
    oneself (fine); chronic illness, readings up, treatment, nobody to help, not getting better,
    money, loneliness (needs help); a spouse collapsed, gas, fire, bleeding, a limb gone still,
    breath, a stroke (emergency). Typed, at the welfare question and over every intent."""
    for expect in (_WELFARE_Q, None):
        got = classify(text, expect)
        assert got is not None and got.intent == intent, (text, expect, got)


@pytest.mark.parametrize("text", ["还行，就是腿疼", "挺好的，就是睡不好", "血压挺稳的，就是腰疼",
                                  "腿脚还利索，就是血糖有点高", "吃饭挺香，就是老咳嗽"])
def test_a_fine_with_a_complaint_after_it_is_needs_help(text: str) -> None:
    got = classify(text, _WELFARE_Q)
    assert got is not None and got.intent == "needs_help", (text, got)


@pytest.mark.parametrize("text", ["那个电视剧挺好看的，我天天看", "菜市场的白菜又涨价了",
                                  "我孙子在外地上大学，过年才回来"])
def test_talk_about_other_things_is_no_welfare_answer(text: str) -> None:
    """挺好看的 is no 挺好的 (好看 is a word of no intent), a grandson away at college no visit."""
    assert classify(text, _WELFARE_Q) is None, text


@pytest.mark.parametrize("pinyin", ["wǒ měi chū qù liù wān", "hái zi měi lái kàn guò wǒ",
                                    "nǎ tiān wǒ qù cài shì chǎng mǎi cài mài cài de gēn wǒ shuō"])
def test_a_mei_without_the_word_it_counts_is_no_routine(pinyin: str) -> None:
    """每 and 没 differ only by tone, and tones slip: 我没出去遛弯 heard "měi" is no 每天都出去遛弯
    with 天都 left out, 孩子没来看过我 no 孩子每周来看我, and a story's "nǎ tiān wǒ qù cài shì chǎng"
    no 每天去菜市场. A 每 counts only followed closely by what it counts."""
    got = classify("", _WELFARE_Q, pinyin=pinyin)
    assert got is None or got.intent != "ok", (pinyin, got)


def test_a_slip_that_fits_two_meanings_equally_is_asked_again() -> None:
    """不用了，我儿子给我买过了 sped up is "bù yòng lún? wǒ …": 不用管我 (fine) and 不用给我 (no) are
    one slip each; which one won depended on the hash order of a set (the lead's fourth set, kept
    as fine in some runs). Now neither is guessed; a phrase that fits more closely still wins."""
    got = classify("", None, pinyin="bù yòng lún? wǒ ér zi gěi wǒ mǎi guò le")
    assert got is None or got.intent == "no", got
    assert classify("不用管我", None).intent == "ok"


@pytest.mark.parametrize("text", ["没事了", "我没事了，谢谢", "没事了，挺好"])
def test_the_commonest_fine_is_no_emergency(text: str) -> None:
    """没气了 ("stopped breathing") is one syllable from 没事了: it is not in the lexicon alone nor
    after a spouse (a first draft of stop 20 made 没事了 urgent)."""
    got = classify(text, _WELFARE_Q)
    assert got is not None and got.intent == "ok", (text, got)


_FAMILIES_20B = {  # hear-a's second round: a new list of ways to say it, then the families it missed
    "ok": ["儿女都孝顺", "比前段时间好多了", "不咳了，好多了", "已经不疼了", "没病没灾的", "天天乐呵呵的",
           "啥事都没有", "日子挺好过的", "每天都去老年大学上课", "好着呢，刚吃完饭"],
    "needs_help": ["老伴去世了，就剩我一个人", "吃药也不管用", "血压一百八", "家里太冷了", "耳朵越来越背了",
                   "脚后跟疼", "最近瘦了好多", "心里慌得很", "得了带状疱疹，疼得厉害", "一个人吃饭没意思",
                   "心脏不太好，要吃药"],
    "emergency": ["她突然倒下了", "他抽风了", "头晕，站不住了", "胸口像压了块石头", "被开水烫了",
                  "家里淹了", "我吃错药了"],
}


@pytest.mark.parametrize(("text", "intent"), [(t, i) for i, ts in _FAMILIES_20B.items() for t in ts])
def test_welfare_families_of_stop_20_second_round(text: str, intent: str) -> None:
    """Better than before / a complaint gone / family kindness (fine); bereavement and living
    alone, medicine not working, a reading said as a number, a cold home, a sense declining (needs
    help); a sudden fall, a fit, not able to stand, a scald, a flood, wrong medicine (emergency)."""
    got = classify(text, _WELFARE_Q)
    assert got is not None and got.intent == intent, (text, got)


@pytest.mark.parametrize(("text", "pinyin"), [("今天天气不错", None),
                                           ("能给五盒吗，家里人多", "néng gěi wǔ hé ma jiā lǐ rén dūn")])
def test_weather_and_a_household_are_no_welfare_answer(text: str, pinyin: str | None) -> None:
    """天气不错 is talk (a word of no intent), not 不错; 家里人多 as the lead's third set was heard is
    no 家里冷 (left out of the cold-home phrases), and at the offer it is still five masks."""
    got = classify(text, _WELFARE_Q, pinyin=pinyin)
    assert got is None or got.intent not in ("ok", "needs_help"), (text, got)
    if pinyin:
        assert classify(text, None, pinyin=pinyin).intent == "quantity"


def test_the_lexicon_search_finds_what_aligning_each_candidate_finds() -> None:
    """Lexicon.search (all candidates aligned at once, those that cannot come within their limit
    skipped) gives what aligning each candidate alone gives, cost for cost, in lexicon order;
    pinyin.SoundTable's distances are pinyin.distance's, bit for bit (the answers hang on exact
    cost comparisons). Over replies of the free set, perturbed: a syllable dropped, swapped for
    another of the lexicon's, inserted."""
    import random

    from callbot import defaults, intents
    from callbot import pinyin as py

    lex = intents.lexicon()
    sounds = sorted({s for e in lex.entries for s in e.syllables})
    free = json.loads((REPO / "tests/fixtures/audio/free/transcripts.json")
                      .read_text(encoding="utf-8"))
    rnd = random.Random(9)
    replies = []
    for m in list(free.values())[::4]:
        syls = py.from_text(m["text"])
        replies.append(syls)
        for how in ("drop", "swap", "insert"):
            s = list(syls)
            k = rnd.randrange(len(s))
            if how == "drop":
                del s[k]
            else:
                s[k:k + (how == "swap")] = [rnd.choice(sounds)]
            replies.append(s)
    heard = sorted({s for r in replies for s in r} | {("zz", "ā"), ("q", ""), ("", "ḿ")})
    table = py.SoundTable(sounds).distances(heard)
    assert all(table[i, j] == py.distance(a, b) for i, a in enumerate(sounds)
               for j, b in enumerate(heard))
    slack = {"emergency": defaults.INTENT_URGENT_SLACK}
    found = 0
    for syls in replies:
        want = [(e, got) for e in lex.candidates(syls) if (got := intents._align(
            e.syllables, syls, slack.get(e.intents[0], 0.0) if e.intents else 0.0))]
        assert [(id(e), got) for e, got in lex.search(syls, slack)] == \
            [(id(e), got) for e, got in want], py.to_string(syls)
        found += len(want)
    assert found > 500


_FAMILIES_21 = {  # hear-c (stop 21): what residents say, by family; none of these is in held_out_hear_c
    "needs_help": ["腿一直疼", "腰老是不好", "膝盖总是酸", "走路吃力", "上楼很费劲", "起床困难", "爬楼梯费劲",
                   "晚上老是睡不着", "夜里睡不踏实", "面吃完了", "降压药快没了", "煤气用完了", "我搬不动",
                   "洗衣机坏了，不转了", "空调不制冷", "没人聊天",
                   "一个人孤零零的", "还行，不过腰疼", "还可以，但是血压高"],
    "ok": ["一点毛病没有", "身体没毛病", "挺硬朗的", "都挺顺的", "挺好，就是挺好"],
    "human": ["让书记给我回电话", "叫社区干部来接电话", "居委会主任来一趟"],
}


@pytest.mark.parametrize(("text", "intent"), [(t, i) for i, ts in _FAMILIES_21.items() for t in ts])
def test_welfare_families_of_stop_21(text: str, intent: str) -> None:
    """A body part with 一直 / 老是 / 总是 before its complaint, moving about made hard, sleep at
    night, a staple or the medicine run out, a load too heavy, an appliance broken, nobody to talk
    to, a complaint after a turn (还行，不过腰疼) — needs help; fine in more words; a staff member
    asked for by title."""
    got = classify(text, _WELFARE_Q)
    assert got is not None and got.intent == intent, (text, got)


@pytest.mark.parametrize("text", ["那个歌挺好听的，我天天听", "隔壁王大妈每天早上去买菜，然后去跳广场舞",
                                  "今天外面天气挺好的，太阳很大", "老李天天去公园打太极", "楼下的人家挺好的"])
def test_someone_elses_routine_and_talk_of_things_is_no_answer(text: str) -> None:
    """A song that is nice to hear (挺好听 heard as said outweighs 过得挺好 heard loosely across
    it), a neighbour's routine (a fine told after someone other than the resident, with no 我
    between, is theirs), the weather (挺好的 of 天气; 太阳很大 is no 烟很大 "thick smoke"): no
    answer at any question."""
    for wanted in (None, _WELFARE_Q):
        got = classify(text, wanted)
        assert got is None, (text, wanted, got)


def test_the_residents_own_routine_after_a_neighbour_is_still_fine() -> None:
    """The fine is dropped only when no 我 stands between the other person and it: 邻居天天来看我
    (the visit is to the resident) and 隔壁老李和我每天都去公园遛弯 are fine."""
    for text in ("邻居天天来看我", "隔壁老李和我每天都去公园遛弯"):
        got = classify(text, _WELFARE_Q)
        assert got is not None and got.intent == "ok", (text, got)


@pytest.mark.parametrize("text", ["还行，就是", "还可以，就是", "挺好的，不过", "还行，但是那个"])
def test_a_fine_cut_at_its_turn_is_no_fine_yet(text: str) -> None:
    """还行，就是 — a reply cut at the pause after its turn (the offer's 0.3 s silence): what comes
    after the turn is the point, so the fine alone is not kept; asked again, never fine."""
    got = classify(text, _WELFARE_Q)
    assert got is None or got.intent != "ok", (text, got)


def test_a_count_of_people_then_the_quantity_is_the_quantity() -> None:
    """我家三口人，要三个 as the transducer hears it ("… yào sān kēng", 个 slipped to kēng, marked
    unsure or not): three masks, not the bare yes of 三口人. A numeral surely heard before the
    reply's last syllable, that syllable near 个 / 盒, is that number; an unsure numeral is not."""
    for pinyin in ("wǒ jiā sān kǒu rén yào sān kēng", "wǒ jiā sān kǒu rén yào sān kēng?"):
        got = classify("", None, pinyin=pinyin)
        assert got is not None and (got.intent, got.value) == ("quantity", 3), (pinyin, got)
    got = classify("", None, pinyin="wǒ jiā sān kǒu rén yào sān? kēng")
    assert got is None or got.intent != "quantity", got


def test_the_lexicon_windows_are_the_per_start_sums() -> None:
    """Lexicon.windows (the staff rendering's close phrases: every candidate at every start at
    once) gives each candidate's syllable-for-syllable cost at each start as summing
    pinyin.distance one by one gives it (unsure syllables weighed half), cost for cost."""
    from callbot import intents
    from callbot import pinyin as py

    lex = intents.lexicon()
    free = json.loads((REPO / "tests/fixtures/audio/free/transcripts.json")
                      .read_text(encoding="utf-8"))
    limits = [0.5 * intents.max_cost(n) if n >= 2 else -1.0 for n in range(40)]
    found = 0
    for m in list(free.values())[::5]:
        syls = py.from_text(m["text"])
        weights = [0.5 if k % 3 == 1 else 1.0 for k in range(len(syls))]
        want = []
        for e in lex.candidates(syls, spare=1):
            for start in range(len(syls) - len(e.syllables) + 1):
                cost = sum(py.distance(p, syls[start + k]) * weights[start + k]
                           for k, p in enumerate(e.syllables))
                if cost <= limits[len(e.syllables)]:
                    want.append((id(e), start, cost))
        assert [(id(e), s, c) for e, s, c in lex.windows(syls, weights, 1, limits)] == want
        found += len(want)
    assert found > 100


def test_a_slip_tied_with_another_meaning_is_asked_again() -> None:
    """不用了 heard "bù yòng lún? wǒ" fits 不用管我 (fine) and 不用给我 (no) at one cost: a toss-up,
    asked again, not a "fine" (the rule `_tied` never fired before stop 21's end: `_analyse`
    returned its Analysis without the matches it considered). Trouble is never set aside so:
    家里没米了，我出不去 stays needs_help."""
    assert classify("不用了", pinyin="bù yòng lún? wǒ") is None
    got = classify("家里没米了，我出不去")
    assert got is not None and got.intent == "needs_help"
