"""Template validation: each kind of error names the right line and says what to fix; the Jinja2
sandbox refuses escapes at validation time; the built-ins are valid."""

from __future__ import annotations

import textwrap

import pytest

from callbot.exceptions import TemplateError
from callbot.script import builtin_names, load_script, parse_script

GOOD = """\
name: demo
title: 演示
requires: [姓名]
fields:
  need: bool
  count: int 0-3
  state: ok | needs_help
steps:
  hello:
    say: "{{ 姓名 }}您好，这里是{{ 居委会 }}，今天是{{ date }}。"
    next: ask
  ask:
    ask: "需要吗？需要请按1，不需要请按2。"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {need: true}, next: bye}
      no: {set: {need: false}, next: bye}
  bye:
    say: "再见。"
    end: completed
"""


def errors_of(text: str, **kw) -> list:
    with pytest.raises(TemplateError) as info:
        parse_script(textwrap.dedent(text), filename="t.yaml", **kw)
    assert info.value.errors, str(info.value)
    for e in info.value.errors:
        assert e.file == "t.yaml" and e.line >= 1 and e.message
    return info.value.errors


def only(errors: list, needle: str):
    hits = [e for e in errors if needle in e.message]
    assert hits, [str(e) for e in errors]
    return hits[0]


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_the_good_template_is_valid_and_renders() -> None:
    script = parse_script(GOOD, filename="t.yaml")
    assert script.name == "demo" and list(script.steps) == ["hello", "ask", "bye"]
    assert script.fields["count"].describe() == "int 0–3"
    ctx = script.context({"name": "王伯"}, committee="幸福里居委会", date="5月1日")
    assert script.render(script.steps["hello"].text, ctx) == "王伯您好，这里是幸福里居委会，今天是5月1日。"


def test_builtins_are_valid_with_fixed_names_and_fields() -> None:
    assert {"mask_reservation", "welfare_check"} <= set(builtin_names())
    mask = load_script("mask_reservation")
    assert mask.title == "口罩预约登记"
    assert mask.fields["need_masks"].type == "bool"
    assert (mask.fields["masks"].type, mask.fields["masks"].min, mask.fields["masks"].max) == ("int", 0, 5)
    welfare = load_script("welfare_check")
    assert welfare.title == "独居老人关爱回访"
    assert welfare.fields["welfare"].choices == ("ok", "needs_help")
    assert welfare.fields["note"].type == "text"
    assert welfare.fields["urgent"].type == "bool" and welfare.end_silence_s == 0.8
    for script in (mask, welfare):
        assert script.warnings == []
        for step in script.steps.values():
            if step.kind == "ask":
                assert step.keys, f"{script.name}.{step.name} has no DTMF fallback"
                if script is mask:
                    assert "按" in step.text
                else:  # open questions: the keys are offered once, when a reply was not understood
                    assert "按" not in step.text
                    assert "按" in (step.handlers["no_match"].say_for(1) or "")
                    assert "按" not in (step.handlers["no_match"].say_for(2) or "")
        script.check_columns(["姓名", "电话"])


def test_yaml_error_line() -> None:
    bad = replace_line(GOOD, "    next: ask\n", "   next: ask\n")
    e = errors_of(bad)[0]
    assert e.line == 11 and "YAML" in e.message and "缩进" in e.message


def test_yaml_tab_and_unclosed_quote() -> None:
    e = errors_of(replace_line(GOOD, '    say: "再见。"', '    say: "再见。'))[0]
    assert "YAML" in e.message and e.line >= 19


def test_empty_and_non_mapping() -> None:
    assert "空" in errors_of("")[0].message
    assert "映射" in errors_of("- a\n- b\n")[0].message


def test_unknown_step_target_line_and_suggestion() -> None:
    bad = replace_line(GOOD, "yes: {set: {need: true}, next: bye}", "yes: {set: {need: true}, next: byee}")
    e = only(errors_of(bad), "byee")
    assert e.line == 16 and "不存在" in e.message and "'bye'" in e.message


def test_unknown_target_of_a_say_step() -> None:
    e = only(errors_of(replace_line(GOOD, "    next: ask\n", "    next: asking\n")), "asking")
    assert e.line == 11


def test_unreachable_step() -> None:
    bad = GOOD + "  orphan:\n    say: 没人来这里\n    end: completed\n"
    e = only(errors_of(bad), "orphan")
    assert e.line == 21 and "走不到" in e.message


def test_loop_with_no_exit() -> None:
    bad = """\
    name: loop
    steps:
      a:
        say: 你好
        next: b
      b:
        ask: 好吗？按1
        keys: {1: yes}
        answers:
          yes: a
          no: b
    """
    errors = errors_of(bad)
    e = only(errors, "没有出口")
    assert e.line in (3, 6) and "end" in e.message


def test_undefined_variable_without_a_list() -> None:
    bad = replace_line(GOOD, "今天是{{ date }}", "今天是{{ date }}，{{ 楼号 }}")
    e = only(errors_of(bad), "楼号")
    assert e.line == 10 and "未定义" in e.message


def test_undefined_variable_against_the_lists_columns() -> None:
    # 姓名 is required but the list only has 电话
    errors = errors_of(GOOD, columns=["电话"])
    assert only(errors, "名单缺少").line == 3
    assert only(errors, "{{ 姓名 }}").line == 10
    # English aliases count: a list with a "name" column satisfies {{ 姓名 }}
    parse_script(GOOD, filename="t.yaml", columns=["name", "phone"])
    script = parse_script(GOOD, filename="t.yaml")
    with pytest.raises(TemplateError):
        script.check_columns(["电话"])
    script.check_columns(["姓名"])


def test_undefined_variable_inside_a_block_scalar_gets_its_own_line() -> None:
    bad = replace_line(GOOD, '    ask: "需要吗？需要请按1，不需要请按2。"',
                       "    ask: |\n      需要吗？\n      {{ 门牌 }}请按1")
    e = only(errors_of(bad), "门牌")
    assert e.line == 15


def test_jinja_syntax_error() -> None:
    bad = replace_line(GOOD, '    say: "再见。"', '    say: "{{ 姓名 再见。"')
    e = only(errors_of(bad), "语法错误")
    assert e.line == 19 and "{{ }}" in e.message


@pytest.mark.parametrize("expr", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ 姓名.__class__ }}",
    "{{ answers['__class__'] }}",
    "{{ ''|attr('__class__') }}",
    "{{ 姓名.format(1) }}",
    "{{ lipsum.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ range(100000000)|length }}",
    "{% include '/etc/passwd' %}",
    "{% import 'x' as y %}",
    "{{ 姓名.mro }}",
])
def test_sandbox_escapes_are_refused_at_validation(expr: str) -> None:
    bad = replace_line(GOOD, '    say: "再见。"', f'    say: "再见 {expr}"')
    errors = errors_of(bad)
    e = only(errors, "沙箱")
    assert e.line == 19


def test_the_renderer_is_sandboxed_too() -> None:
    script = parse_script(GOOD, filename="t.yaml")
    with pytest.raises(TemplateError):
        script.render("{{ ''.__class__.__mro__[1].__subclasses__() }}", script.context({"姓名": "x"}))
    with pytest.raises(TemplateError, match="姓名"):
        script.render("{{ 姓名 }}", script.context({}))


@pytest.mark.parametrize(("old", "new", "needle", "line"), [
    ("  need: bool", "  need: boolean", "类型", 5),
    ("  count: int 0-3", "  count: int 5-3", "下限", 6),
    ("yes: {set: {need: true}, next: bye}", "yes: {set: {nope: true}, next: bye}", "nope", 16),
    ("yes: {set: {need: true}, next: bye}", "yes: {set: {need: maybe}, next: bye}", "bool", 16),
    ("keys: {1: yes, 2: no}", "keys: {1: yes, 2: no, 3: ok}", "answers 里没有 ok", 14),
    ("keys: {1: yes, 2: no}", "keys: {1: yes, x: no}", "按键 'x'", 14),
    ("keys: {1: yes, 2: no}", "keys: {1: yes, 2: maybe}", "maybe", 14),
    ("      no: {set: {need: false}, next: bye}", "      nope: {set: {need: false}, next: bye}",
     "nope", 17),
    ("    end: completed", "    end: finished", "finished", 20),
    ("    end: completed", "    endd: completed", "endd", 20),
    ("    next: ask\n", "    next: ask\n    end: completed\n", "next 和 end", 9),
    ("name: demo", "name: 演 示", "name", 1),
    ("title: 演示", "title: 演示\ntitle: 再来", "重复", 3),
])
def test_other_mistakes(old: str, new: str, needle: str, line: int) -> None:
    e = only(errors_of(replace_line(GOOD, old, new)), needle)
    assert e.line == line, str(e)


def test_say_step_without_next_and_ask_without_answers() -> None:
    bad = replace_line(GOOD, "    next: ask\n", "")
    assert only(errors_of(bad), "说完后去哪里").line == 9
    bad = """\
    name: x
    steps:
      a:
        ask: 好吗？
    """
    assert only(errors_of(bad), "需要 answers").line in (3, 4)


def test_a_question_without_keys_is_a_warning_not_an_error() -> None:
    script = parse_script(replace_line(GOOD, "    keys: {1: yes, 2: no}\n", ""), filename="t.yaml")
    assert len(script.warnings) == 1 and script.warnings[0].line == 12
    assert "按键" in script.warnings[0].message


def test_error_lists_every_problem_sorted_by_line() -> None:
    bad = replace_line(GOOD, "next: bye}", "next: nowhere}")
    bad = replace_line(bad, '    say: "再见。"', '    say: "{{ 姓名.__class__ }}"')
    errors = errors_of(bad)
    assert [e.line for e in errors] == sorted(e.line for e in errors)
    with pytest.raises(TemplateError) as info:
        parse_script(bad, filename="t.yaml")
    assert "t.yaml:16:" in str(info.value) and "t.yaml:19:" in str(info.value)


def test_load_script_errors(tmp_path) -> None:
    with pytest.raises(TemplateError, match="找不到模板"):
        load_script("no_such_template")
    p = tmp_path / "gbk.yaml"
    p.write_bytes(GOOD.encode("gbk"))
    with pytest.raises(TemplateError, match="UTF-8"):
        load_script(p)
    p = tmp_path / "ok.yaml"
    p.write_text(GOOD, encoding="utf-8")
    assert load_script(p).name == "demo"
    assert load_script(str(p)).name == "demo"


def test_all_prompts_enumerates_answer_dependent_texts() -> None:
    prompts = load_script("mask_reservation").all_prompts({"姓名": "张阿姨"}, committee="某居委会")
    for n in range(1, 6):
        assert f"好的，给您登记{n}盒口罩，对吗？对请按1，不对请按2。" in prompts
    assert prompts[0] == "张阿姨您好，这里是某居委会。我们正在为居民登记预约口罩。"
    assert len(prompts) == len(set(prompts))


def test_the_guides_example_is_valid_and_runs() -> None:
    from pathlib import Path

    from callbot.dialogue import DialogueEngine, Digit

    guide = (Path(__file__).resolve().parents[2] / "docs" / "scripts.md").read_text(encoding="utf-8")
    example = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    script = parse_script(example, filename="docs/scripts.md")
    assert script.warnings == []
    engine = DialogueEngine(script, {"姓名": "孙大爷"})
    engine.start()
    engine.on(Digit("1"))
    assert engine.answers == {"willing": True} and engine.ended == "completed"


def test_assistant_message_is_off_by_default_and_validated_like_a_prompt() -> None:
    """``assistant:`` (a message for a voice assistant): none unless written; the text is
    checked like a prompt (variables, answers, length, keys) and a bad one names its line."""
    assert parse_script(GOOD, filename="t.yaml").assistant is None
    ok = parse_script(GOOD + 'assistant: {say: "{{ 姓名 }}您好，这里是{{ 居委会 }}，请回电。"}\n',
                      filename="t.yaml")
    assert ok.assistant == "{{ 姓名 }}您好，这里是{{ 居委会 }}，请回电。"
    assert "张三您好" in " ".join(ok.all_prompts({"姓名": "张三"}))  # rendered before dialling
    assert parse_script(GOOD + 'assistant: "请回电。"\n', filename="t.yaml").assistant == "请回电。"
    line = GOOD.count("\n") + 1
    for bad, words in (('assistant: {sya: "请回电"}', "sya"), ('assistant: ""', "留言文字"),
                       ('assistant: "{{ 楼号 }}请回电"', "楼号"),
                       ('assistant: "{{ answers.need }}"', "answers"),
                       ('assistant: "' + "请回电" * 50 + '"', "太长")):
        errs = errors_of(GOOD + bad + "\n")
        assert [e.line for e in errs] == [line] and words in errs[0].message, (bad, errs)
