"""'Call me back later' (现在没空 / 晚点再打): the ``later`` intent, the ``callback`` end reason in
templates, and both built-ins ending ``callback`` at each question with the answers kept."""

from __future__ import annotations

import itertools
import textwrap

import pytest

from callbot.dialogue import DialogueEngine, Digit, HangUp, Heard, Listen, Say
from callbot.exceptions import TemplateError
from callbot.intents import Answer, classify, phrases
from callbot.script import END_REASONS, load_script, parse_script

CONTACT = {"姓名": "张阿姨"}
GOODBYE = "好的，那我们晚点再打给您。再见。"
LATER = ["later", "repeat", "wrong_person"]


# --- the intent ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "我现在没空，晚点再打", "现在没空", "没空", "没时间", "在忙", "我在忙", "我现在忙着呢", "我很忙",
    "等会儿再打", "过一会再打吧", "一会儿再打", "待会儿再说", "晚点打过来", "你晚点再打来", "晚一点",
    "稍后再打", "改天再打", "明天再打吧", "回头再说", "现在不方便", "不方便", "我在开会", "我现在有事",
    "我有点事", "我在外面，晚点打",
])
def test_later_phrasings(text: str) -> None:
    assert classify(text) == Answer("later", None, text)
    assert classify(text, LATER) == Answer("later", None, text)


@pytest.mark.parametrize("text", [
    "好的，我在忙",           # not a yes
    "现在不行，晚点打",        # not a no
    "什么？我现在没空",        # not a repeat
    "没空",                   # 没 is not a negation here
    "不方便",                 # nor 不
    "回头再说",               # 再说 inside it is not "say it again"
])
def test_later_beats_yes_no_and_repeat(text: str) -> None:
    for expect in (None, ["yes", "no", "later", "repeat"], ["ok", "needs_help", "later", "repeat"]):
        assert classify(text, expect).intent == "later", (text, expect)


def test_needs_help_still_beats_later_and_plain_answers_are_unchanged() -> None:
    # a resident who is unwell must reach a grid worker even when asking for a call back
    assert classify("我不舒服，晚点再打").intent == "needs_help"
    assert classify("有事").intent == "needs_help"  # 有事 alone stays what it was
    for text, intent in [("需要", "yes"), ("不需要", "no"), ("两盒", "quantity"), ("我很好", "ok"),
                         ("不太好", "needs_help"), ("你说什么", "repeat"), ("打错了", "wrong_person"),
                         ("等一下", None), ("没有", "no"), ("没事", "ok")]:
        got = classify(text)
        assert (got.intent if got else None) == intent, text


def test_a_question_that_does_not_handle_later_does_not_take_busy_for_no() -> None:
    # before `later`, 现在没空 was read as a "no" (need_masks=false); now it is no answer at all
    assert classify("现在没空", ["yes", "no", "repeat", "wrong_person"]) is None
    assert classify("现在不方便", ["yes", "no"]) is None


def test_later_phrases_for_keyword_spotting_classify_back() -> None:
    spotted = phrases(["later"])
    assert {"没空", "现在没空", "在忙", "我在忙", "等会儿再打", "晚点再打", "不方便"} <= set(spotted)
    assert "忙" not in spotted  # one syllable: too easily heard in other speech
    for p in spotted:
        assert classify(p).intent == "later", p
    assert set(spotted) <= set(phrases(None))


# --- templates ----------------------------------------------------------------------------------

TEMPLATE = """\
name: t
title: 测试
fields:
  ok: bool
steps:
  ask:
    ask: "好吗？按1。"
    keys: {1: yes}
    answers:
      yes: {set: {ok: true}, next: bye}
      later: {end: callback}
  bye: {say: "再见。", end: completed}
"""


def test_callback_is_an_end_reason_templates_may_use() -> None:
    assert "callback" in END_REASONS
    script = parse_script(TEMPLATE, filename="t.yaml")
    engine = DialogueEngine(script, {})
    engine.start()
    actions = engine.on(Heard("我在忙"))
    # no `say` in the handler: the default polite goodbye for callback
    assert [a.text for a in actions if isinstance(a, Say)] == [GOODBYE]
    assert isinstance(actions[-1], HangUp) and actions[-1].reason == "callback"
    assert engine.ended == "callback" and engine.answers == {}


def test_unknown_end_reason_message_lists_callback() -> None:
    with pytest.raises(TemplateError) as exc:
        parse_script(TEMPLATE.replace("end: callback", "end: call_back"), filename="t.yaml")
    (issue,) = exc.value.errors
    assert issue.line == 11 and "call_back" in issue.message and "callback" in issue.message


def test_later_has_nothing_to_record() -> None:
    bad = TEMPLATE.replace("later: {end: callback}", "later: {record: ok, end: callback}")
    with pytest.raises(TemplateError) as exc:
        parse_script(bad, filename="t.yaml")
    assert any("later" in e.message and e.line == 11 for e in exc.value.errors)


def test_a_key_may_mean_later() -> None:
    script = parse_script(TEMPLATE.replace("keys: {1: yes}", "keys: {1: yes, 9: later}"),
                          filename="t.yaml")
    engine = DialogueEngine(script, {})
    engine.start()
    engine.on(Digit("9"))
    assert engine.ended == "callback"


# --- the built-ins ------------------------------------------------------------------------------

def run(name: str, replies: list[str]):
    clock = itertools.count(0.0, 0.5)
    engine = DialogueEngine(load_script(name), CONTACT, committee="幸福里居委会",
                            clock=lambda: next(clock))
    actions = engine.start()
    for reply in replies:
        actions += engine.on(Heard(reply))
    return engine, actions


def ends_with_callback(engine, actions) -> None:
    said = [a.text for a in actions if isinstance(a, Say)]
    assert engine.ended == "callback"
    assert said[-1] == GOODBYE and said.count(GOODBYE) == 1  # one polite goodbye, no other
    assert isinstance(actions[-1], HangUp) and actions[-1].reason == "callback"
    assert engine.step is None


@pytest.mark.parametrize(("replies", "step", "answers"), [
    ([], "ask_need", {}),
    (["需要"], "ask_count", {"need_masks": True}),
    (["需要", "不要"], "confirm_none", {"need_masks": True}),
    (["需要", "两盒"], "confirm", {"need_masks": True, "masks": 2}),
])
@pytest.mark.parametrize("busy", ["我现在没空，晚点再打", "等会儿再打", "我在忙"])
def test_mask_reservation_calls_back_at_every_question(replies, step, answers, busy) -> None:
    engine, _ = run("mask_reservation", replies)
    assert engine.step == step
    listen = engine.listening
    assert isinstance(listen, Listen) and "later" in listen.intents
    assert {"没空", "我在忙", "等会儿再打"} <= set(listen.expect)  # the KWS grammar has them
    actions = engine.on(Heard(busy))
    ends_with_callback(engine, actions)
    assert engine.answers == answers  # what was heard before stays recorded


@pytest.mark.parametrize(("replies", "step", "answers"), [
    ([], "ask_health", {}),
    (["挺好的"], "ask_help", {"welfare": "ok"}),
])
@pytest.mark.parametrize("busy", ["我现在没空，晚点再打", "现在不方便", "在忙呢，晚点打过来"])
def test_welfare_check_calls_back_at_every_question(replies, step, answers, busy) -> None:
    engine, _ = run("welfare_check", replies)
    assert engine.step == step
    assert {"现在没空", "在忙"} <= set(engine.listening.expect)
    actions = engine.on(Heard(busy))
    ends_with_callback(engine, actions)
    assert engine.answers == answers


def test_welfare_unwell_and_busy_is_a_visit_not_a_call_back() -> None:
    engine, _ = run("welfare_check", ["我不舒服，晚点再打"])
    assert engine.answers == {"welfare": "needs_help", "note": "我不舒服，晚点再打"}
    assert engine.ended == "completed"


def test_callback_goodbye_is_among_the_prerendered_prompts() -> None:
    for name in ("mask_reservation", "welfare_check"):
        engine = DialogueEngine(load_script(name), CONTACT, committee="幸福里居委会")
        assert GOODBYE in engine.prompts(), name


def test_mask_template_keeps_its_confirm_none_step() -> None:
    script = load_script("mask_reservation")
    assert "confirm_none" in script.steps and "later" in script.steps["confirm_none"].answers
    src = textwrap.dedent(script.source)
    assert "end: callback" in src
