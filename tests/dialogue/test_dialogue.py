"""The dialogue engine walked through every path of both built-in scripts, and its promises:
a polite goodbye on every path, bounded turns, no answer recorded on silence."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbot.dialogue import (
    BargeIn,
    DialogueEngine,
    Digit,
    HangUp,
    Heard,
    HungUp,
    Listen,
    Record,
    Say,
    Silence,
)
from callbot.script import load_script

CONTACT = {"姓名": "张阿姨"}


def run(name: str, events: list, contact=None):
    clock = itertools.count(0.0, 0.5)
    engine = DialogueEngine(load_script(name), contact or CONTACT, committee="幸福里居委会",
                            clock=lambda: next(clock))
    actions = engine.start()
    for event in events:
        actions += engine.on(event)
    return engine, actions


def says(actions) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def records(actions) -> list[tuple[str, object]]:
    return [(a.field, a.value) for a in actions if isinstance(a, Record)]


def assert_polite_end(engine, actions, reason: str) -> None:
    assert engine.ended == reason
    assert isinstance(actions[-1], HangUp) and actions[-1].reason == reason
    assert "再见" in says(actions)[-1]
    assert engine.step is None


# --- mask_reservation ---------------------------------------------------------------------------

def test_mask_start_greets_by_name_and_asks_with_a_key_fallback() -> None:
    engine, actions = run("mask_reservation", [])
    assert says(actions)[0].startswith("张阿姨您好，这里是幸福里居委会")
    assert "按1" in says(actions)[1] and "按2" in says(actions)[1]
    listen = actions[-1]
    assert isinstance(listen, Listen)
    assert {"需要", "不需要", "两个", "要两盒"} <= set(listen.expect)
    assert listen.keymap == {"1": "yes", "2": "no"}
    assert listen.step == "ask_need" and listen.timeout_s > 0
    assert engine.ended is None and engine.answers == {}


def test_mask_yes_then_two_then_confirm() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("两个"), Heard("对")])
    assert records(actions) == [("need_masks", True), ("masks", 2)]
    assert engine.answers == {"need_masks": True, "masks": 2}
    assert any("给您登记2盒" in s for s in says(actions))
    assert "已经为您登记2盒口罩" in says(actions)[-1]
    assert_polite_end(engine, actions, "completed")


def test_mask_no() -> None:
    engine, actions = run("mask_reservation", [Heard("不需要")])
    assert engine.answers == {"need_masks": False, "masks": 0}
    assert "不需要口罩" in says(actions)[-1]
    assert_polite_end(engine, actions, "completed")


def test_mask_keys_one_then_three() -> None:
    engine, actions = run("mask_reservation", [Digit("1"), Digit("3"), Digit("1")])
    assert engine.answers == {"need_masks": True, "masks": 3}
    assert [t["text"] for t in engine.transcript if t["role"] == "callee"] == ["按键1", "按键3", "按键1"]
    assert_polite_end(engine, actions, "completed")


def test_mask_key_two_is_no() -> None:
    engine, actions = run("mask_reservation", [Digit("2")])
    assert engine.answers == {"need_masks": False, "masks": 0}
    assert_polite_end(engine, actions, "completed")


def test_mask_quantity_in_the_first_reply_skips_the_count_question() -> None:
    engine, actions = run("mask_reservation", [Heard("要两盒"), Heard("是的")])
    assert engine.answers == {"need_masks": True, "masks": 2}
    assert not any("需要几盒" in s for s in says(actions))
    assert_polite_end(engine, actions, "completed")


def test_mask_silence_twice_records_nothing_and_says_goodbye() -> None:
    engine, actions = run("mask_reservation", [Silence(), Silence()])
    assert engine.answers == {} and records(actions) == []
    texts = says(actions)
    assert texts.count(texts[1]) == 2  # the question was asked again once
    assert "您还在听吗" in texts[2]
    assert_polite_end(engine, actions, "no_input")


def test_mask_silence_once_then_answer() -> None:
    engine, actions = run("mask_reservation", [Silence(), Heard("不要")])
    assert engine.answers == {"need_masks": False, "masks": 0}
    assert_polite_end(engine, actions, "completed")


def test_mask_no_match_three_times_ends_politely() -> None:
    engine, actions = run("mask_reservation", [Heard("喂"), Heard("啊哈"), Heard("今天天气")])
    assert engine.answers == {}
    assert says(actions).count("不好意思，我没有听清楚。") == 2
    assert_polite_end(engine, actions, "no_match")


def test_mask_unknown_key_is_a_no_match() -> None:
    engine, actions = run("mask_reservation", [Digit("9"), Digit("1")])
    assert "不好意思，我没有听清楚。" in says(actions)
    assert engine.answers == {"need_masks": True}
    assert engine.step == "ask_count"


def test_mask_repeat_asks_again_without_recording() -> None:
    engine, actions = run("mask_reservation", [Heard("你说什么"), Heard("需要")])
    texts = says(actions)
    assert "好的，我再说一遍。" in texts
    assert texts.count(texts[1]) == 2
    assert engine.answers == {"need_masks": True}


def test_mask_wrong_person() -> None:
    engine, actions = run("mask_reservation", [Heard("你打错了")])
    assert engine.answers == {}
    assert_polite_end(engine, actions, "wrong_person")


def test_mask_over_the_cap_is_refused_and_asked_again() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("十个"), Heard("五个"),
                                               Heard("好的")])
    assert "每户最多可以预约五盒" in " ".join(says(actions))
    assert ("masks", 10) not in records(actions)
    assert engine.answers == {"need_masks": True, "masks": 5}
    assert_polite_end(engine, actions, "completed")


def test_mask_over_the_cap_three_times_ends() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("十个"), Heard("八个"),
                                               Heard("二十个")])
    assert engine.answers == {"need_masks": True}
    assert_polite_end(engine, actions, "no_match")


def test_mask_count_question_answered_with_no_is_confirmed_first() -> None:
    """A "no" at the quantity question contradicts the "yes" before it (or is a misheard
    quantity): nothing is recorded until the resident says "no" again."""
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("不要了")])
    assert engine.answers == {"need_masks": True} and engine.step == "confirm_none"
    assert "还需要口罩吗" in says(actions)[-1]
    actions += engine.on(Heard("不需要"))
    assert engine.answers == {"need_masks": False, "masks": 0}
    assert_polite_end(engine, actions, "completed")


def test_mask_count_no_then_yes_asks_the_count_again() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("不要"), Heard("需要"),
                                               Digit("2"), Digit("1")])
    assert engine.answers == {"need_masks": True, "masks": 2}
    assert ("need_masks", False) not in records(actions)
    assert_polite_end(engine, actions, "completed")


def test_mask_count_no_then_a_quantity_records_it() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("不要"), Heard("三个"),
                                               Heard("对")])
    assert engine.answers == {"need_masks": True, "masks": 3}
    assert_polite_end(engine, actions, "completed")


def test_mask_confirm_no_asks_the_count_again() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("两个"), Heard("不对"),
                                               Heard("三个"), Heard("对")])
    assert records(actions) == [("need_masks", True), ("masks", 2), ("masks", 3)]
    assert engine.answers["masks"] == 3
    assert_polite_end(engine, actions, "completed")


def test_mask_confirm_corrected_with_a_quantity() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("两个"), Heard("三盒"),
                                               Digit("1")])
    assert engine.answers["masks"] == 3
    assert any("给您登记3盒" in s for s in says(actions))
    assert_polite_end(engine, actions, "completed")


def test_mask_silence_at_confirm_keeps_the_heard_answer() -> None:
    engine, actions = run("mask_reservation", [Digit("1"), Digit("3"), Silence(), Silence()])
    assert engine.answers == {"need_masks": True, "masks": 3}
    assert_polite_end(engine, actions, "no_input")


def test_mask_hang_up_mid_call() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), HungUp()])
    assert engine.ended == "hung_up"
    assert engine.answers == {"need_masks": True}
    assert engine.on(Heard("两个")) == [] and engine.on(Silence()) == []


def test_mask_max_turns() -> None:
    engine, actions = run("mask_reservation", [Heard("你说什么")] * 20)
    assert engine.turns == engine.script.max_turns + 1
    assert_polite_end(engine, actions, "max_turns")


def test_low_confidence_is_a_no_match() -> None:
    clock = itertools.count()
    engine = DialogueEngine(load_script("mask_reservation"), CONTACT, min_confidence=0.5,
                            clock=lambda: next(clock))
    engine.start()
    engine.on(Heard("需要", 0.2))
    assert engine.answers == {}
    engine.on(Heard("需要", 0.9))
    assert engine.answers == {"need_masks": True}


def test_barge_in_marks_the_prompt_and_changes_nothing_else() -> None:
    engine, actions = run("mask_reservation", [])
    assert engine.on(BargeIn()) == []
    assert engine.transcript[-1]["interrupted"] is True
    assert engine.step == "ask_need"


def test_transcript_has_roles_texts_and_times() -> None:
    engine, _ = run("mask_reservation", [Heard("需要"), Heard("两个"), Heard("对")])
    roles = [t["role"] for t in engine.transcript]
    assert set(roles) == {"bot", "callee"}
    assert [t["text"] for t in engine.transcript if t["role"] == "callee"] == ["需要", "两个", "对"]
    times = [t["t"] for t in engine.transcript]
    assert times == sorted(times) and times[0] >= 0


def test_start_twice_and_on_before_start_are_errors() -> None:
    engine = DialogueEngine(load_script("mask_reservation"), CONTACT)
    with pytest.raises(RuntimeError):
        engine.on(Silence())
    engine.start()
    with pytest.raises(RuntimeError):
        engine.start()


def test_prompts_cover_everything_the_engine_says() -> None:
    engine, actions = run("mask_reservation", [Heard("需要"), Heard("四个"), Heard("对")])
    prompts = set(DialogueEngine(load_script("mask_reservation"), CONTACT,
                                 committee="幸福里居委会").prompts())
    for text in says(actions):
        assert text in prompts


# --- welfare_check ------------------------------------------------------------------------------

def test_welfare_ok_and_no_help_needed() -> None:
    engine, actions = run("welfare_check", [Heard("我很好"), Heard("不需要")])
    assert says(actions)[0].startswith("张阿姨您好")
    assert engine.answers == {"welfare": "ok"}
    assert "放心" in says(actions)[-1]
    assert_polite_end(engine, actions, "completed")


def test_welfare_unwell_flags_needs_help_with_a_note() -> None:
    engine, actions = run("welfare_check", [Heard("我不舒服")])
    assert engine.answers == {"welfare": "needs_help", "note": "我不舒服"}
    assert "网格员" in says(actions)[-1]
    assert_polite_end(engine, actions, "completed")


@pytest.mark.parametrize("reply", ["不太好", "需要帮助", "身体不好，腿疼"])
def test_welfare_other_needs_help_replies(reply: str) -> None:
    engine, actions = run("welfare_check", [Heard(reply)])
    assert engine.answers["welfare"] == "needs_help"
    assert engine.answers["note"] == reply


def test_welfare_fine_but_needs_help() -> None:
    engine, actions = run("welfare_check", [Heard("挺好的"), Heard("需要")])
    assert records(actions) == [("welfare", "ok"), ("welfare", "needs_help"), ("note", "需要")]
    assert "网格员" in says(actions)[-1]
    assert_polite_end(engine, actions, "completed")


def test_welfare_fine_then_says_needs_help() -> None:
    engine, actions = run("welfare_check", [Heard("还行"), Heard("需要帮助")])
    assert engine.answers == {"welfare": "needs_help", "note": "需要帮助"}


def test_welfare_keys() -> None:
    engine, actions = run("welfare_check", [Digit("1"), Digit("2")])
    assert engine.answers == {"welfare": "ok"}
    assert_polite_end(engine, actions, "completed")
    engine, actions = run("welfare_check", [Digit("2")])
    assert engine.answers == {"welfare": "needs_help"}  # a key gives no note
    engine, actions = run("welfare_check", [Digit("1"), Digit("1")])
    assert engine.answers == {"welfare": "needs_help"}


def test_welfare_yes_and_ok_words() -> None:
    engine, _ = run("welfare_check", [Heard("好的"), Heard("挺好的")])
    assert engine.answers == {"welfare": "ok"} and engine.ended == "completed"


def test_welfare_silence_twice_records_nothing() -> None:
    engine, actions = run("welfare_check", [Silence(), Silence()])
    assert engine.answers == {}
    assert_polite_end(engine, actions, "no_input")


def test_welfare_wrong_person_and_repeat() -> None:
    engine, actions = run("welfare_check", [Heard("听不清"), Heard("不是我")])
    assert "好的，我再说一遍。" in says(actions)
    assert_polite_end(engine, actions, "wrong_person")


# --- every path ends politely -------------------------------------------------------------------

EVENTS = st.one_of(
    st.sampled_from(["需要", "不需要", "两个", "十个", "我很好", "我不舒服", "你说什么", "喂", "对",
                     "不对", "不是我", "三盒", "好的"]).map(Heard),
    st.sampled_from(list("0123456789")).map(Digit),
    st.just(Silence()), st.just(BargeIn()),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["mask_reservation", "welfare_check"]),
       events=st.lists(EVENTS, max_size=60))
def test_every_path_is_bounded_and_ends_politely(name: str, events: list) -> None:
    engine, actions = run(name, events + [Silence()] * 2 * 25)
    # whatever the callee does, the call ends, with a goodbye, within the turn limit
    assert engine.ended in ("completed", "no_input", "no_match", "wrong_person", "max_turns")
    assert_polite_end(engine, actions, engine.ended)
    assert engine.turns <= engine.script.max_turns + 1
    assert sum(isinstance(a, HangUp) for a in actions) == 1
    for field_name, value in engine.answers.items():
        engine.script.fields[field_name].coerce(value)
    if name == "mask_reservation" and "masks" in engine.answers:
        assert 0 <= engine.answers["masks"] <= 5
