"""Free-form recognition through the real transducer: every reply becomes toned pinyin and a
Chinese rendering, and the intent comes from the pinyin over the whole lexicon.

The free set (tests/fixtures/audio/free, made by scripts/make_free_replies.py) holds 108 phrasings
of every intent — 28 the lexicon was tuned on, 21 held out, 12 held out later (worked on since), 16
fresh ones and the lead's 31 (worked on since) — each clean, slowed+lowered and sped-up+noisy, and 12
long unrelated sentences (news, a story with a stray 不要, a neighbour, a recipe…).
Replies are streamed frame by frame through the same stream a call uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callbot import intents
from callbot import pinyin as py
from callbot.speech.asr import Final
from callbot.speech.audio import frames, read_8k
from tests.conftest import FIXTURES
from tests.speech.conftest import REAL, REPLIES, final_of, run_stream, transcripts

# the module fixture `heard` decodes the whole free set (~1,300 clips) once: ~1 min on a quiet
# 2-core box, past pytest's 300 s beside a loaded box's other tests
pytestmark = [pytest.mark.speech, pytest.mark.timeout(1200)]

FREE = FIXTURES / "audio" / "free"
VARIANTS = ("", "_slow", "_fast")
WELFARE_SILENCE_S = 0.8  # the welfare script's end-of-reply silence (slowed speech pauses 0.6 s)


def free_set() -> dict[str, dict]:
    return json.loads((FREE / "transcripts.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pinyin_engine(kws_model_dir: Path):
    from callbot.speech.pinyin_asr import PinyinEngine

    return PinyinEngine(kws_model_dir)


def hear(engine, wav: Path, silence_s: float = WELFARE_SILENCE_S):
    return final_of(run_stream(engine.stream([], trailing_silence_s=silence_s), read_8k(wav)))


@pytest.fixture(scope="module")
def heard(pinyin_engine) -> dict[str, tuple[str, str, intents.Answer | None]]:
    """stem+variant → (text, pinyin, answer) for the whole free set, decoded once."""
    out = {}
    for stem in free_set():
        for v in VARIANTS:
            final = hear(pinyin_engine, FREE / f"{stem}{v}.wav")
            out[stem + v] = (final.text, final.pinyin,
                             intents.classify(final.text, pinyin=final.pinyin))
    return out


def test_the_fall_from_the_issue(pinyin_engine) -> None:
    final = hear(pinyin_engine, FREE / "emg_shuaile.wav")
    toneless = [py.key(s)[:2] for s in py.from_string(final.pinyin)]
    assert toneless == [py.key(s)[:2] for s in py.from_text("我摔了一跤站不起来")], final
    assert final.text == "我摔了一跤站不起来"  # rendered from the lexicon where it was heard
    got = intents.classify(final.text, pinyin=final.pinyin)
    assert got is not None and (got.intent, got.value, got.urgent) == ("emergency", "needs_help", True)
    assert 0 < final.confidence <= 1 and final.end_s > 1.5


def test_free_replies_are_understood_and_never_misheard(heard) -> None:
    """≥ 95 % of the tuned and ≥ 90 % of the held-out replies understood (all three voices); a
    reply not understood is asked again, a wrong one is kept, so no intent may be taken for
    another, and no number for another (四盒 sped up and noisy, heard "jiù? hé?", was 九盒: an
    unsure numeral off its own tone is now asked again)."""
    meta = free_set()
    wrong_numbers = []
    for part, floor in (("tuned", 0.95), ("held_out", 0.90)):
        stems = [s for s, m in meta.items() if m["set"] == part]
        right = 0
        for stem in stems:
            for v in VARIANTS:
                got = heard[stem + v][2]
                if got is None:
                    continue
                if (got.intent, got.value) == (meta[stem]["intent"], meta[stem]["value"]):
                    right += 1
                elif got.intent == meta[stem]["intent"] == "quantity":
                    wrong_numbers.append(stem + v)
                else:
                    pytest.fail(f"{stem}{v} ({meta[stem]['text']}) heard as {got} from "
                                f"{heard[stem + v][1]!r}")
        assert right >= floor * 3 * len(stems), (part, right, 3 * len(stems))
    assert not wrong_numbers, wrong_numbers


def test_trouble_is_never_heard_as_fine(heard) -> None:
    meta = free_set()
    for stem, m in meta.items():
        if m["intent"] not in ("needs_help", "emergency"):
            continue
        for v in VARIANTS:
            got = heard[stem + v][2]
            assert got is None or got.intent not in ("ok", "no", "yes"), (stem + v, got)
            if got is not None and got.intent == "emergency":
                assert got.urgent


def test_every_clean_emergency_is_urgent(heard) -> None:
    for stem, m in free_set().items():
        if m["intent"] == "emergency":
            got = heard[stem][2]
            assert got is not None and got.intent == "emergency" and got.urgent, (stem, heard[stem])


def test_a_cry_for_help_on_a_noisy_line_is_heard_through_its_unclear_syllable(heard) -> None:
    """救命啊 sped up with line noise is heard "yòng? mìng àn?": the transducer was unsure of 用
    (and 啊), and marks them. Nothing is understood at first; the second reading takes the one
    unclear syllable for the 救 it could be — an emergency, urgent."""
    text, pinyin, got = heard["emg_jiuming_fast"]
    assert py.from_string(pinyin)[1] == ("m", "ìng") and 0 in py.unsure_of(pinyin), pinyin
    assert got is not None and (got.intent, got.urgent) == ("emergency", True), (pinyin, got)
    assert intents.classify(text, pinyin=pinyin.replace("?", "")) is None  # not without the mark


def test_the_newer_held_out_replies(heard) -> None:
    """12 phrasings written after the lexicon and the unclear-syllable reading: 28 of 36 were
    understood when they were added. The lexicon was then widened by families (胸口/心口 + 疼得…
    is an emergency, 咳嗽 and other complaints, 没听/听不 + 清/懂/明白, 谢谢不要了 a no): all 36 now
    — no longer held out."""
    meta = free_set()
    stems = [s for s, m in meta.items() if m["set"] == "held_out_new"]
    wrong = [(stem + v, heard[stem + v][1], heard[stem + v][2]) for stem in stems for v in VARIANTS
             if heard[stem + v][2] is None or (heard[stem + v][2].intent, heard[stem + v][2].value)
             != (meta[stem]["intent"], meta[stem]["value"])]
    assert not wrong, wrong


@pytest.mark.parametrize(("stem", "intent"), [
    ("emg_xiongkou", "emergency"),   # 我胸口疼得受不了: urgent, not a complaint
    ("help_kesou", "needs_help"),    # 我这几天咳嗽得厉害 heard "kě sòng? dé lì hán"
    ("rep_mingbai", "repeat"),       # 我没听明白
    ("no_xiexie", "no"),             # 谢谢，我们不要了 sped up: "bú yào lěng?" a no, not a stop
])
def test_the_widened_families_on_audio(heard, stem: str, intent: str) -> None:
    for v in VARIANTS:
        text, pinyin, got = heard[stem + v]
        assert got is not None and got.intent == intent, (stem + v, pinyin, got)
        assert got.urgent == (intent == "emergency")


def test_fine_outweighs_a_complaint_heard_only_loosely(heard) -> None:
    """身体还行，就是年纪大了 is heard right in every voice, "shì nián" in it the nearest the
    lexicon has to 失眠 (shī mián: a tone and an initial off). That loose complaint no longer
    outweighs the 身体还行 heard exactly around it: the reply is fine. The same reply with the
    complaint heard as said is still needs_help."""
    for v in VARIANTS:
        text, pinyin, got = heard["ok_nianji" + v]
        assert "shì nián" in pinyin, pinyin
        assert got is not None and (got.intent, got.value) == ("ok", "ok"), (v, pinyin, got)
        said = intents.classify("", ["ok", "needs_help"], pinyin=pinyin.replace("shì nián",
                                                                                "shī mián"))
        assert said is not None and said.intent == "needs_help", said


def test_a_loosely_heard_what_inside_other_words_is_no_request_to_repeat(heard) -> None:
    """这两天发烧，浑身没劲 sped up with noise is heard "… fā shēng wéi shēn méi jiàn?": its
    "shēn méi" (浑身没) is two slips from 什么, which counts only in a short reply. It was taken
    as a request to repeat; a weak word must now be heard closely unless it is the whole reply,
    so the reply is not understood (asked again) rather than misunderstood. A short 啊什么 and a
    bare "shēn méi" still ask for the question again."""
    text, pinyin, got = heard["help_fashao_fast"]
    assert "shēn méi" in pinyin, pinyin
    assert got is None or got.intent != "repeat", (pinyin, got)
    for short in ("ā shén me", "shēn méi"):
        again = intents.classify("", pinyin=short)
        assert again is not None and again.intent == "repeat", (short, again)


def test_the_fresh_held_out_replies(heard) -> None:
    """16 phrasings written and synthesised before the lexicon was widened, never tuned on: 43 of
    48 understood when first measured (bench/hear.py), none missed and none of trouble heard as
    fine, but 5 heard as another intent — 身体还行，就是年纪大了 (all voices: "shì nián" taken for
    失眠, so needs_help), 这两天发烧，浑身没劲 sped up (repeat), 让社区的人跟我说吧 sped up (later).
    The first three were then worked on by a general rule (a loose complaint does not outweigh a
    clear "fine", test above), and 发烧 by another (a loose 什么 inside other words is no request
    to repeat: now not understood): 46 of 48 and 1 wrong, no longer wholly held out. The last wrong
    one, 让社区的人跟我说吧 sped up ("yào? shè qū de yán zhōng? wǒ shuō ba": 中午再说吧 without its 再
    and with 午 slipped), is asked again since stop 19 (a phrase missing a syllable and slipped in
    another is no match). A floor, so that a change that makes them worse is seen; none wrong."""
    meta = free_set()
    stems = [s for s, m in meta.items() if m["set"] == "held_out_fresh"]
    right, wrong = 0, []
    for stem in stems:
        m = meta[stem]
        for v in VARIANTS:
            got = heard[stem + v][2]
            if got is not None and (got.intent, got.value) == (m["intent"], m["value"]):
                right += 1
            elif got is not None:
                wrong.append((stem + v, got.intent))
            if m["intent"] in ("needs_help", "emergency"):  # never heard as fine
                assert got is None or got.intent not in ("ok", "yes", "no"), (stem + v, got)
    assert right >= 46, (right, 3 * len(stems), wrong)
    assert not wrong, wrong


LEAD2_FLOOR, LEAD2_WRONG = 75, 1  # stop 19: 72 → 75 of 87, wrong 5 → 1 (麻烦你们了，我需要 fast)


def _held_out_part(heard, part: str) -> tuple[int, list[tuple[str, str]]]:
    """Replies of the free set's *part* understood, and those kept as another answer; asserts on
    the way that its unrelated sentences answer nothing and its trouble is never heard as fine."""
    right, wrong = 0, []
    for stem, m in free_set().items():
        if m["set"] != part:
            continue
        for v in VARIANTS:
            got = heard[stem + v][2]
            if m["intent"] is None:
                assert got is None, (stem + v, heard[stem + v][1], got)
            elif got is not None and (got.intent, got.value) == (m["intent"], m["value"]):
                right += 1
            elif got is not None:
                wrong.append((stem + v, got.intent))
            if m["intent"] in ("needs_help", "emergency"):
                assert got is None or got.intent not in ("ok", "yes", "no"), (stem + v, got)
    return right, wrong


def test_the_leads_held_out_replies(heard) -> None:
    """31 phrasings and 2 unrelated sentences the lead wrote without looking at the lexicon
    (``held_out_lead``): 74 of 93 understood on the code they were added to (bench/hear.py,
    0.8 s), 10 heard as another answer. Their failures were then worked on by general rules (a
    slip beside a clear other meaning is asked again; a 不 heard inside a phrase turns it) and
    families (assent + 我要, refusal + its reason, fine + who looks after the resident, 能不能让真人
    接电话): 87 of 93, none wrong — no longer held out. A floor, so that a change that makes them worse is seen;
    trouble is never heard as fine and the unrelated sentences answer nothing."""
    right, wrong = _held_out_part(heard, "held_out_lead")
    assert right >= 87, (right, wrong)
    # stop 20: 我家三口人 is a yes (a household, not a number of boxes: how many is asked next), so
    # 我家三口人，要三个 heard "…yào sān kēng" (三个 not heard as a number) is now that yes; before,
    # 三口 was read as three boxes ("口" a measure word) — right only by that accident
    assert [w for w in wrong if not w[0].startswith("lead_qty_sankouren")] == [], wrong
    assert all(w[1] == "yes" for w in wrong), wrong


def test_the_leads_second_held_out_replies(heard) -> None:
    """The lead's second set (``held_out_lead2``, 29 phrasings + 2 unrelated sentences), written
    without looking at the lexicon and kept off main until the stop's other classifier changes had
    landed, measured once there (bench/hear.py, 0.8 s): 69 of 87 understood, 7 kept as another
    answer — 3 of them trouble heard as fine (家里没人照顾我 as 家里人照顾我 with a 没 put in). That one
    was then mended (a surely heard 没 turns a phrase round, as 不 and 别 do), so the set is seen
    now: 72 of 87. A floor; trouble is never heard as fine, the unrelated sentences answer nothing,
    and the wrong answers known may not grow: 5 through this test's one stream per clip (别给我留了
    → stop ×3, 老毛病了，不要紧 slow → needs_help, 麻烦你们了，我需要 fast → needs_help; the bench,
    which starts a new stream after each reply, had 4). Those were then worked on by general rules
    (stop 19: a stop needs a call word heard closely; a complaint only guessed at beside a clear
    "fine" is asked again): 75 of 87 through this test, 1 wrong (麻烦你们了，我需要 sped up, heard
    "má fán nǐ men le? wǒ jiù? yào", is 麻烦你们帮我取药 read through two doubted syllables:
    needs_help — a rule against that cost five right answers elsewhere). The floor is that figure,
    and the wrong answers may not come back."""
    right, wrong = _held_out_part(heard, "held_out_lead2")
    assert right >= LEAD2_FLOOR, (right, wrong)
    assert len(wrong) <= LEAD2_WRONG, wrong


def test_the_leads_third_and_fourth_held_out_replies(heard) -> None:
    """The lead's third set (``held_out_lead3``, 31 phrasings + 2 unrelated sentences) was
    measured on main before stop 19's classifier work: 58 of 93 understood, 8 wrong (bench/hear.py,
    0.8 s); the kinds of its misses were then told to helper hear (semi-blind): 76 of 93, 3 wrong
    (我不想再接到你们的电话 as a fall: 接到 aligned with 跌倒). The fourth (``held_out_lead4``, 30 + 2),
    written after every other change of the stop and measured once: 77 of 90, 2 wrong (不用了，我儿子
    给我买过了 as two masks: 儿子 aligned with 二只). Both wrong answers were then mended by general
    rules (a word of no intent heard exactly counts; not wanting to receive the calls is a stop):
    seen now, 79 of 93 and 79 of 90 on the bench. Floors through this test's one stream per clip; trouble is never heard as fine, the
    unrelated sentences answer nothing."""
    right3, wrong3 = _held_out_part(heard, "held_out_lead3")
    right4, wrong4 = _held_out_part(heard, "held_out_lead4")
    assert right3 >= 79 and right4 >= 78, (right3, wrong3, right4, wrong4)
    # one left: 不用了 heard "bù yòng lún?", rendered 不用管我 ("don't worry about me": fine) when
    # the reply is read with every intent open; the offer's own question asks it again
    assert not wrong3 and len(wrong4) <= 1, (wrong3, wrong4)


LEAD5_FLOOR = 100
LEAD5_WRONG = {("lead5_yes_taixiexie_fast", "needs_help"), ("lead5_human_zhenren_fast", "no"),
               ("lead5_human_zhenren_fast", "needs_help")}


def test_the_leads_fifth_held_out_replies(heard) -> None:
    """The lead's fifth set (``held_out_lead5``, 35 phrasings + 3 unrelated sentences, stop 20),
    written before the stop's classifier work and kept off main until it had all landed: on main
    before it (e366ada) 93 of 105 understood, 2 wrong; after it (4c59569) 100 of 105, 2 wrong
    (bench/hear.py's way, 0.8 s) — blind both times. The two wrong are the recogniser's: 需要需要，
    太谢谢了 sped up heard "zhè? yàng xū yào tàn? xiè xiè lín?" (needs_help: trouble guessed, never
    the other way round) and 有没有真人啊 sped up heard "yǒu méi yǒu diǎn? yǎn ér yǐ" (no; through
    this test's one stream per clip, 有没有点痒: needs_help). Seen from now on: a floor; trouble is
    never heard as fine, the unrelated sentences answer nothing, and no new wrong answer comes."""
    right, wrong = _held_out_part(heard, "held_out_lead5")
    assert right >= LEAD5_FLOOR, (right, wrong)
    assert set(wrong) <= LEAD5_WRONG and len(wrong) <= 2, wrong


def test_hear_bs_own_replies(heard) -> None:
    """Helper hear-b's 21 phrasings + 1 unrelated sentence (``held_out_hear_b``, stop 20), written
    beside the lexicon families they exercise (not blind): 16 of 63 understood and 10 kept as
    another answer on main before the families (我们家三口人 as 3 boxes, 可以给我两盒吗 as a bare yes,
    我们这儿是单位的电话 as needs_help); after, 61 of 63 and none wrong on the bench. A floor through
    this test's one stream per clip; none kept wrong, and the talk in the room (老头子，你把遥控器
    给我拿过来) is no answer to the offer. Read with every intent open, the sped-up one is heard
    "lǎo tóu téng? …" — 头疼, needs_help (the welfare lexicon's; left to its owner), so it is
    checked at the offer's question only."""
    right, wrong = 0, []
    offer = ["yes", "no", "quantity", "later", *intents.ALWAYS]
    for stem, m in free_set().items():
        if m["set"] != "held_out_hear_b":
            continue
        for v in VARIANTS:
            text, pinyin, got = heard[stem + v]
            if m["intent"] is None:
                assert intents.classify(text, offer, pinyin=pinyin) is None, (stem + v, pinyin)
            elif got is not None and (got.intent, got.value) == (m["intent"], m["value"]):
                right += 1
            elif got is not None:
                wrong.append((stem + v, pinyin, got.intent))
    assert right >= 59, (right, wrong)
    # 有好几个呢 sped up, heard here "yǒu hào jǔ gē néng? wǔ?", was 九个 (nine boxes against plenty at
    # home) until 好几 slipped to "hào jǔ" after a 有 counted as "several" too
    assert not wrong, wrong


def test_a_slip_beside_a_clear_other_meaning_is_asked_again(heard) -> None:
    """一个就行了 slowed or sped up is heard "yí gè jiù xiě? wèn": nothing is understood at first,
    and the second reading (an unsure syllable read as the emergency word it could be) took
    "jiù xiě?" for 救命 — an urgent false alarm kept, beside the 一个 heard exactly. A phrase heard
    only through a slip, beside a phrase of another meaning heard closely, is now asked again. The
    same reply with 救命 heard as said is still an emergency: trouble heard closely always wins."""
    for v in ("_slow", "_fast"):
        text, pinyin, got = heard["lead_qty_yigejiuxing" + v]
        assert pinyin.startswith("yí gè jiù x") and 3 in py.unsure_of(pinyin), pinyin
        assert got is None or (got.intent, got.value) == ("quantity", 1), (v, pinyin, got)
        said = intents.classify("", pinyin=" ".join(pinyin.split()[:3]) + " mìng")
        assert said is not None and (said.intent, said.urgent) == ("emergency", True), said


@pytest.mark.parametrize(("stem", "intent", "value"), [
    ("lead_yes_haodeya", "yes", True),    # 好的呀，我要: was ok (挺好的呀 less its 挺)
    ("lead_no_duozhene", "no", False),    # 不要不要，家里多着呢: was ok (利索着呢) and stop (不要打了)
    ("lead_ok_haizi", "ok", "ok"),        # 都挺好的，孩子刚来看过我: was needs_help (来看看我)
    ("lead_human_zhenren", "human", None),  # 能不能让真人接电话: was not understood
])
def test_the_reply_families_on_audio(heard, stem: str, intent: str, value) -> None:
    """Assent + what is wanted, a refusal + its reason, fine + who looks after the resident, a
    person asked for (data/lexicon.yaml's assent/want, refuse/home/plenty, kin/cared families;
    真人/人工/客服 + 接电话/跟我说话 in askfor/staff/reach, 能不能 a question form): every voice."""
    for v in VARIANTS:
        text, pinyin, got = heard[stem + v]
        assert got is not None and (got.intent, got.value) == (intent, value), (stem + v, pinyin, got)


def test_unrelated_speech_is_no_answer(heard) -> None:
    """Television news, a weather report, an advert, a long story with a stray 不要 and 两棵, a
    neighbour talking: transcribed, and answering nothing at any question."""
    for stem, m in free_set().items():
        if m["set"] != "distractor":
            continue
        for v in VARIANTS:
            text, pinyin, got = heard[stem + v]
            assert got is None, (stem + v, text, pinyin, got)
            assert len(py.from_string(pinyin)) >= 12  # it was heard, not dropped


def test_unrelated_speech_at_the_short_end_silence(pinyin_engine) -> None:
    """At a call's default 0.3 s end silence the slowed and sped-up sentences (pauses up to
    0.6 s) were cut into pieces that answered (今天上五 → 5, 听见没有 → no, 三十年 …): talk that
    has run long is now waited out, and no piece answers anything."""
    for stem, m in free_set().items():
        if m["set"] != "distractor":
            continue
        for v in ("_slow", "_fast"):
            pcm = read_8k(FREE / f"{stem}{v}.wav")
            stream = pinyin_engine.stream([], trailing_silence_s=0.3)
            pieces = []
            for frame in frames(pcm + b"\0" * 32000):
                pieces += [e for e in stream.accept(frame) if isinstance(e, Final)]
                if stream.done:
                    stream = pinyin_engine.stream([], trailing_silence_s=0.3)
            for final in pieces:
                got = intents.classify(final.text, pinyin=final.pinyin)
                assert got is None, (stem + v, [f.pinyin for f in pieces], got)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/audio/real not present")
def test_real_recordings_are_no_answer(pinyin_engine) -> None:
    """Real people's speech (../shared/audio/real): as a whole, and cut at its first pause the
    way the welfare script's end-of-reply silence cuts it, it answers nothing."""
    for wav in sorted(REAL.glob("*.wav")):
        whole = hear(pinyin_engine, wav, silence_s=2.0)
        assert len(py.from_string(whole.pinyin)) >= 8, (wav.name, whole)
        first = hear(pinyin_engine, wav)
        for final in (whole, first):
            assert intents.classify(final.text, pinyin=final.pinyin) is None, (wav.name, final)


def test_the_shipped_reply_clips(pinyin_engine) -> None:
    """The 27 clips the demo's residents speak: each gives its intent or nothing (五个 is heard
    as "nǐ gè": the transducer's worst word), never another one."""
    meant = {stem: intents.classify(text) for stem, text in transcripts().items()}
    missed = []
    for stem, want in meant.items():
        final = hear(pinyin_engine, REPLIES / f"{stem}.wav", silence_s=0.3)
        got = intents.classify(final.text, pinyin=final.pinyin)
        if got is None and want is not None:
            missed.append(stem)
            continue
        said = (got.intent, got.value) if got else None
        assert said == ((want.intent, want.value) if want else None), (stem, final)
    assert len(missed) <= 1, missed


def test_silence_and_a_line_hiss_are_not_speech(pinyin_engine) -> None:
    final = final_of(run_stream(pinyin_engine.stream([], no_input_s=1.0), b"\0" * 16000))
    assert type(final).__name__ == "NoInput"


def test_expected_phrases_fill_match(pinyin_engine) -> None:
    final = final_of(run_stream(pinyin_engine.stream(["需要", "不需要", "两个"]),
                                read_8k(REPLIES / "buxuyao.wav")))
    assert (final.text, final.match, final.pinyin) == ("不需要", "不需要", "bù xū yào")


def test_a_refusal_of_the_offer_is_never_a_stop(heard) -> None:
    """别给我拿了 ("do not bring me any", hear's own) and the lead's 别给我留了 are one syllable from
    别给我打了: they were stop in every voice — the resident put on the do-not-call list for
    refusing masks. A stop phrase now needs a call word (打, 电话, 骚扰 …) heard closely: a no, or
    asked again; never stop. 以后别给我打电话了 is still stop in every voice."""
    for stem in ("hear_no_biena", "hear_no_songkouzhao", "lead2_no_bieliule"):
        for v in VARIANTS:
            text, pinyin, got = heard[stem + v]
            assert got is None or (got.intent, got.value) == ("no", False), (stem + v, pinyin, got)
    for v in VARIANTS:
        assert heard["hear_no_biena" + v][2] is not None, heard["hear_no_biena" + v]
        text, pinyin, got = heard["hear_stop_dadianhua" + v]
        assert got is not None and got.intent == "stop", (v, pinyin, got)


def test_a_number_heard_unsurely_is_asked_again_not_guessed(heard) -> None:
    """四盒吧 sped up and noisy is heard "jiù? hé? ba": the transducer doubted the 九 it wrote,
    in 四's falling tone, not 九's. It was kept as nine boxes; it is now asked again. Numbers heard
    surely, or unsurely in their own tone, are still taken: 我要四个 and 九盒 (hear's own) clean."""
    text, pinyin, got = heard["qty_sihe_fast"]
    assert 0 in py.unsure_of(pinyin) and py.from_string(pinyin)[0] == ("j", "iù"), pinyin
    assert got is None, (pinyin, got)
    assert intents.classify("", pinyin=pinyin.replace("?", "")) == intents.Answer(
        "quantity", 9, "", pinyin=pinyin.replace("?", ""))  # not without the mark
    for stem, value in (("hear_qty_sige", 4), ("hear_qty_jiuhe", 9)):
        text, pinyin, got = heard[stem]
        assert got is not None and (got.intent, got.value) == ("quantity", value), (stem, pinyin)
    for stem in ("hear_qty_sige", "hear_qty_jiuhe"):
        for v in VARIANTS:
            got = heard[stem + v][2]
            assert got is None or got.intent == "quantity", (stem + v, heard[stem + v])


def test_plenty_left_and_a_reassurance_on_audio(heard) -> None:
    """还有好多呢，不要了 slowed and sped up was 好着呢 (fine) and 不用了，家里还有好几盒 slowed a
    quantity of seven (几 heard as qǐ: 七): 有好多 / 有好几 now say how many, so no fine and no
    number — a no, or asked again. 没事，不要紧 and 还行吧，挺好 are fine; 腿疼得厉害，不要紧吧 is still
    needs_help in every voice (a clear complaint outweighs the reassurance)."""
    for stem in ("hear_no_haoduo", "hear_no_haojihe"):
        for v in VARIANTS:
            text, pinyin, got = heard[stem + v]
            assert got is None or (got.intent, got.value) == ("no", False), (stem + v, pinyin, got)
    for v in VARIANTS:
        text, pinyin, got = heard["hear_help_buyaojin" + v]
        assert got is not None and got.intent == "needs_help", (v, pinyin, got)
    for stem in ("hear_ok_buyaojin", "hear_ok_haixingba"):
        text, pinyin, got = heard[stem]
        assert got is not None and got.intent == "ok", (stem, pinyin, got)


def test_a_clear_fine_beside_a_guessed_complaint_is_asked_again(heard) -> None:
    """老毛病了，不要紧，挺好的 slowed is heard "lǎo máo bìng le? bú yào qù? tǐng? hǎo de?": 1.6 off
    老毛病又犯了 (needs_help), beside an exact 挺好的. It was kept as needs_help; neither is sure,
    so it is asked again. Trouble is never heard as fine on the way."""
    text, pinyin, got = heard["lead2_ok_laohuoji_slow"]
    assert "tǐng? hǎo de" in pinyin, pinyin
    assert got is None or got.intent == "ok", (pinyin, got)


def test_hears_own_replies(heard) -> None:
    """hear's 10 phrasings (``held_out_hear``, written beside the rules of stop 19, not blind): a
    floor and at most the wrong answers known, so that a change that makes them worse is seen."""
    right, wrong = _held_out_part(heard, "held_out_hear")
    assert right >= HEAR_FLOOR, (right, wrong)
    assert len(wrong) <= HEAR_WRONG, wrong


HEAR_FLOOR, HEAR_WRONG = 24, 0  # on the code they were written beside: 24 of 30, 6 asked again


HEAR_C_FLOOR = 110


def test_hear_cs_own_replies(heard) -> None:
    """Helper hear-c's 38 phrasings + 3 unrelated sentences (``held_out_hear_c``, stop 21: welfare,
    the offer and the call-control intents), written and measured on main before its rules
    (bench/hear.py's way, 0.8 s): 102 of 114 understood, 8 kept as another answer — 3 of them
    trouble heard as fine (还可以，就是晚上睡不好: 晚上睡得不错 read with two syllables dropped) —
    and 7 of the 9 unrelated taken as an answer (那个歌挺好听的 and a neighbour's routine as fine,
    太阳很大 as 烟很大 "thick smoke"). After the families and rules of stop 21: 113 of 114, none
    wrong, none unrelated answered (not blind: the rules were written beside them). A floor through
    this test's one stream per clip; trouble is never heard as fine, the unrelated sentences answer
    nothing and nothing is kept as another answer."""
    right, wrong = _held_out_part(heard, "held_out_hear_c")
    assert right >= HEAR_C_FLOOR, (right, wrong)
    assert not wrong, wrong


def _finals_at(engine, pcm: bytes, silence_s: float) -> list[tuple[Final, float]]:
    """Each Final of *pcm* streamed as a call does (a new stream after each), with the time into
    the audio at which it came out."""
    out: list[tuple[Final, float]] = []
    stream = engine.stream([], trailing_silence_s=silence_s)
    for i, frame in enumerate([*frames(pcm), *[b"\0" * 320] * 100]):
        out += [(e, (i + 1) * 0.02) for e in stream.accept(frame) if isinstance(e, Final)]
        if stream.done:
            stream = engine.stream([], trailing_silence_s=silence_s)
    return out


def test_a_reply_stopping_on_a_hedge_is_waited_on(pinyin_engine) -> None:
    """At the mask offer's 0.3 s end silence 还行，就是腿疼 slowed was cut at its comma pause: "hái
    xíng" alone, a fine — trouble heard as fine. The stream now waits ASR_LONG_REPLY_SILENCE_S
    when what it has heard stops on a word that goes on (还行, 就是, 那个 …, the last possibly
    an initial whose final is still coming: sped up it is "hái x" 0.3 s into the pause): one
    reply, never a fine. The short answers of the shipped clips (要, 是的, 不要, 不用了) are not
    kept waiting: each Final comes 0.3 s (and a frame or two) after its last voiced frame."""
    for stem in ("hear_a_help_haixing_slow", "hear_a_help_haixing_fast"):
        got = _finals_at(pinyin_engine, read_8k(FREE / f"{stem}.wav"), 0.3)
        assert len(got) == 1, (stem, [f.pinyin for f, _t in got])
        answer = intents.classify(got[0][0].text, pinyin=got[0][0].pinyin)
        assert answer is None or answer.intent not in ("ok", "yes", "no"), (stem, got[0][0], answer)
        if stem.endswith("_slow"):
            assert answer is not None and answer.intent == "needs_help", (got[0][0], answer)
    for stem in ("yao", "shide", "buyao", "buyongle"):
        got = _finals_at(pinyin_engine, read_8k(REPLIES / f"{stem}.wav"), 0.3)
        assert len(got) == 1 and got[0][1] - got[0][0].end_s <= 0.3 + 0.1, (stem, got)


LEAD6_FLOOR = 99
LEAD6_WRONG = {"lead6_yes_zhenghao": "no", "lead6_yes_zhenghao_slow": "no",
               "lead6_yes_zhenghao_fast": "emergency", "lead6_stop_saorao_fast": "repeat",
               "lead6_rep_meitingqing_fast": "no"}
LEAD6_UNRELATED_ANSWERED = {"lead6_dis_xinwen": "later", "lead6_dis_chaoshi_fast": "later"}


def test_the_leads_sixth_held_out_replies(heard) -> None:
    """The lead's sixth set (``held_out_lead6``, 35 phrasings + 3 unrelated sentences, stop 21),
    written before the stop's classifier work and kept off main until it had all landed: 97 of
    105 understood before it and 97 after (bench/hear.py, 0.8 s) — blind both times; then the
    lexicon learnt 自己弄不了 and its kin (needs_help): 100 on the bench, 99 through this test's
    one stream per clip. What is still wrong is pinned here so that it cannot grow unseen, and is
    the next work: 正好家里没了，要 heard "… méi wèn yào" is a no (the 没 of 没了 wins over the 要: a
    yes heard as a no; sped up, through this test's stream, an emergency), 没听清，你说什么 sped up
    heard "měi? tiān jūn? nǐ shuō shén me" a no (the unsure 没 wins over an exact 你说什么), 你们这是骚扰电话吧，别打了 sped up
    heard "… diàn huà ba yě? dǎ le" is 电话卡了 (repeat, a loose 4-syllable slip), and two
    unrelated sentences are taken as "later" through such slips (电视里正在放新闻呢 as 正在做饭,
    楼下的超市下个月要关门了 sped up as 要出门了). Trouble is never heard as fine."""
    right, wrong, answered = 0, {}, {}
    for stem, m in free_set().items():
        if m["set"] != "held_out_lead6":
            continue
        for v in VARIANTS:
            got = heard[stem + v][2]
            if m["intent"] is None:
                if got is not None:
                    answered[stem + v] = got.intent
            elif got is not None and (got.intent, got.value) == (m["intent"], m["value"]):
                right += 1
            elif got is not None:
                wrong[stem + v] = got.intent
            if m["intent"] in ("needs_help", "emergency"):
                assert got is None or got.intent not in ("ok", "yes", "no"), (stem + v, got)
    assert right >= LEAD6_FLOOR, (right, wrong)
    assert wrong.items() <= LEAD6_WRONG.items(), wrong
    assert answered.items() <= LEAD6_UNRELATED_ANSWERED.items(), answered
