"""The dialogue with free replies (issue 9): emergency / human / stop / later heard at every
question of every script, repeat asked again slower, open welfare questions with keys offered
once, and what the transcript keeps of each reply."""

from __future__ import annotations

import textwrap

import pytest

from callbot.dialogue import (
    Alert,
    DialogueEngine,
    Digit,
    HangUp,
    Heard,
    Listen,
    Record,
    Say,
    Silence,
)
from callbot.script import load_script, parse_script

CONTACT = {"姓名": "张阿姨"}


def run(name: str, *replies: str | Digit | Silence) -> tuple[DialogueEngine, list]:
    engine = DialogueEngine(load_script(name), CONTACT)
    actions = engine.start()
    for r in replies:
        actions = engine.on(Heard(r) if isinstance(r, str) else r)
    return engine, actions


@pytest.mark.parametrize("name", ["mask_reservation", "welfare_check"])
def test_every_question_hears_the_six(name: str) -> None:
    script = load_script(name)
    for step in script.steps.values():
        if step.kind == "ask":
            assert {"emergency", "human", "stop", "later", "repeat", "wrong_person"} <= set(
                step.intents()), step.name


def test_a_fall_at_the_welfare_health_question() -> None:
    engine, actions = run("welfare_check", "我摔了一跤站不起来")
    assert engine.answers == {"welfare": "needs_help", "urgent": True, "note": "我摔了一跤站不起来"}
    assert engine.ended == "completed"
    assert [a for a in actions if isinstance(a, Record)][:2] == [
        Record("welfare", "needs_help"), Record("urgent", True)]
    assert "马上通知网格员" in [a for a in actions if isinstance(a, Say)][-1].text
    line = [t for t in engine.transcript if t["role"] == "callee"][0]
    assert (line["intent"], line["value"], line["urgent"]) == ("emergency", "needs_help", True)
    assert line["pinyin"] == "wǒ shuāi le yī jiāo zhàn bù qǐ lái"


def test_an_emergency_at_the_second_question_too() -> None:
    engine, _ = run("welfare_check", "还凑合", "救命啊，我心口疼")
    assert engine.answers["urgent"] is True and engine.answers["welfare"] == "needs_help"


def test_free_welfare_replies() -> None:
    engine, _ = run("welfare_check", "还凑合", "暂时不用，谢谢")
    assert engine.answers == {"welfare": "ok"} and engine.ended == "completed"
    engine, _ = run("welfare_check", "最近老睡不着")
    assert engine.answers == {"welfare": "needs_help", "note": "最近老睡不着"}


@pytest.mark.parametrize(("reply", "ended", "say"), [
    ("别老打电话来", "stop", "以后不再给您打"),
    ("我要找人工", "human", "社区工作人员尽快给您回电话"),
    ("救命啊", "emergency", "拨打120"),
    ("我在做饭，等会儿再说", "callback", "晚点再打给您"),
])
def test_a_script_that_says_nothing_ends_politely(reply: str, ended: str, say: str) -> None:
    engine, actions = run("mask_reservation", reply)
    assert engine.ended == ended and engine.answers == {}
    assert actions[-1] == HangUp(ended)
    assert say in [a for a in actions if isinstance(a, Say)][-1].text
    alerts = [(a.reason, a.urgent, a.said) for a in actions if isinstance(a, Alert)]
    want = {"human": [("human", False, reply)], "emergency": [("needs_help", True, reply)]}
    assert alerts == want.get(ended, [])  # a person must act: the committee is told


def test_repeat_asks_again_slower() -> None:
    engine, actions = run("welfare_check", "你说啥我没听清")
    says = [a for a in actions if isinstance(a, Say)]
    assert says[0].text == "好的，我再说一遍。" and not says[0].slow
    assert says[1].text == "您最近身体怎么样？" and says[1].slow
    assert engine.slow_prompts() == ["您最近身体怎么样？", "生活上有没有什么需要我们帮忙的？"]
    # a question asked again after a reply not understood is at the usual pace
    engine, actions = run("welfare_check", "嗯嗯那个")
    assert not any(a.slow for a in actions if isinstance(a, Say))


def test_keys_are_offered_once_on_the_open_question() -> None:
    engine, actions = run("welfare_check", "广州市房地产")
    first = [a.text for a in actions if isinstance(a, Say)]
    assert "按1" in first[0] and first[1] == "您最近身体怎么样？"
    actions = engine.on(Heard("中介协会分析"))
    second = [a.text for a in actions if isinstance(a, Say)]
    assert "按" not in second[0]
    actions = engine.on(Digit("2"))  # the keys still work
    assert engine.answers == {"welfare": "needs_help"}


def test_the_welfare_script_listens_longer() -> None:
    engine, actions = run("welfare_check")
    listen = actions[-1]
    assert isinstance(listen, Listen) and listen.end_silence_s == 0.8
    _, actions = run("mask_reservation")
    assert actions[-1].end_silence_s is None


def test_handlers_for_the_always_intents_and_say_lists() -> None:
    text = textwrap.dedent("""\
        name: t
        end_silence: 1.2
        fields:
          flag: bool
        handlers:
          stop: {say: "好的，不再打扰。", end: stop}
          emergency: {set: {flag: true}, end: completed}
          no_match: {say: ["第一次没听清", "第二次没听清"], retries: 3}
        steps:
          q:
            ask: 要吗？按1
            keys: {1: yes}
            answers: {yes: {end: completed}, human: {end: declined}}
        """)
    script = parse_script(text)
    assert script.end_silence_s == 1.2
    engine = DialogueEngine(script, {})
    engine.start()
    said = []
    for reply in ("今天天气", "明天下雨", "后天刮风"):
        said.append([a.text for a in engine.on(Heard(reply)) if isinstance(a, Say)][0])
    assert said == ["第一次没听清", "第二次没听清", "第二次没听清"]
    acts = engine.on(Heard("我摔倒了"))
    assert acts[0] == Record("flag", True) and acts[-1] == HangUp("completed")
    engine = DialogueEngine(script, {})
    engine.start()
    assert engine.on(Heard("找真人"))[-1] == HangUp("declined")  # the step's own answer wins
    engine = DialogueEngine(script, {})
    engine.start()
    acts = engine.on(Heard("别再打了"))
    assert acts[0] == Say("好的，不再打扰。", "q") and acts[-1] == HangUp("stop")


def test_typed_text_and_the_call_use_one_classifier() -> None:
    """The simulator and the web 试一试 box type text; a call passes the recogniser's pinyin:
    both are read by intents.classify, so 要不要钱 (a question back) is no answer in either."""
    engine, actions = run("mask_reservation", "要不要钱")
    assert engine.answers == {} and "没有听清楚" in actions[0].text
    engine = DialogueEngine(load_script("mask_reservation"), CONTACT)
    engine.start()
    engine.on(Heard("", 1.0, "gěi wǒ liú liǎng hé"))
    assert engine.answers == {"need_masks": True, "masks": 2}


@pytest.mark.parametrize("reply", ["谢谢，不要了", "不用了，谢谢你们", "谢谢我们不要了"])
def test_a_polite_refusal_declines_the_masks_and_is_no_stop(reply: str) -> None:
    """谢谢不要了 is a no to the question: recorded, and the number is not put on the do-not-call
    list (the call ends completed, not stop)."""
    engine, _ = run("mask_reservation", reply)
    assert engine.answers == {"need_masks": False, "masks": 0} and engine.ended == "completed"


@pytest.mark.parametrize(("reply", "urgent"), [
    ("我胸口疼得受不了", True), ("心口闷得慌", True), ("我在厕所摔倒了", True),
    ("我这几天咳嗽得厉害", False), ("发烧了，浑身没劲", False), ("血压又高了", False),
    ("家里水管漏水了", False), ("想请人帮我买药", False),
])
def test_complaints_in_residents_words_reach_a_grid_worker(reply: str, urgent: bool) -> None:
    engine, _ = run("welfare_check", reply)
    assert engine.answers["welfare"] == "needs_help", engine.answers
    assert engine.answers.get("urgent", False) is urgent


@pytest.mark.parametrize("reply", ["我没听明白", "听不太清楚", "你说的啥"])
def test_not_understanding_asks_the_question_again(reply: str) -> None:
    engine, actions = run("welfare_check", reply)
    assert engine.answers == {} and engine.ended is None
    line = [t for t in engine.transcript if t["role"] == "callee"][0]
    assert line["intent"] == "repeat", line  # understood as a request to repeat, not a no-match
    assert [a for a in actions if isinstance(a, Say)], actions  # the question, again
