"""Templates that would eat the web process or hang a page or a call are refused at validation,
with the line (issue 13, holes 1 and 2): YAML aliases expanded without limit, huge or deeply
nested YAML, answer-domain products, and prompts that validate fast but render for ever
(``'x'*10**7``, ``10**10000000``, nested ``for``, filter chains that double a string).

Each attack runs in a child process with a memory ceiling and a time-out, so a regression fails
this test instead of taking the test run (or the machine) down with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from callbot import defaults
from callbot.exceptions import TemplateError
from callbot.script import parse_script

HEAD = """\
name: t
title: 测试
requires: [姓名]
fields:
  need: bool
steps:
  ask:
    ask: "{{ 姓名 }}，需要吗？"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {need: true}, next: bye}
      no: {set: {need: false}, next: bye}
  bye:
    say: "BYE"
    end: completed
"""

CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
from callbot.exceptions import TemplateError
from callbot.script import parse_script
text = sys.stdin.read()
try:
    s = parse_script(text, filename="t.yaml")
    prompts = s.all_prompts({"姓名": "张阿姨"})
    print(json.dumps({"ok": True, "prompts": len(prompts)}))
except TemplateError as exc:
    print(json.dumps({"ok": False, "errors": [[e.line, e.message] for e in exc.errors],
                      "message": str(exc)}, ensure_ascii=False))
"""


def validate_in_child(text: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    """Validate (and pre-render, as a line worker does) *text* in a child process with a 1.5 GB
    address-space ceiling; the child must answer before *timeout*."""
    try:
        p = subprocess.run([sys.executable, "-c", CHILD], input=text, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"validating the template did not finish in {timeout} s") from None
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def refused(text: str, needle: str) -> list:  # type: ignore[type-arg]
    got = validate_in_child(text)
    assert not got["ok"], got
    hits = [(line, msg) for line, msg in got["errors"] if needle in msg]
    assert hits, got["errors"]
    return hits


def with_bye(expr: str) -> str:
    return HEAD.replace('say: "BYE"', f'say: "再见{expr}"')


BYE_LINE = HEAD.splitlines().index('    say: "BYE"') + 1


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_in_bounded_memory() -> None:
    bomb = HEAD.replace("name: t\n", "name: t\n" + alias_bomb(10))  # 9^10 values if expanded
    assert len(bomb.encode()) < 1200
    hits = refused(bomb, "别名")
    assert any(2 <= line <= 11 for line, _ in hits), hits  # a line of the alias lines


def test_a_few_aliases_still_work() -> None:
    text = HEAD.replace("  need: bool\n", "  need: &b bool\n  other: *b\n")
    assert validate_in_child(text)["ok"]


def test_oversized_template_is_refused() -> None:
    big = HEAD + "# " + "x" * (defaults.TEMPLATE_MAX_BYTES + 10) + "\n"
    with pytest.raises(TemplateError, match="太大"):
        parse_script(big, filename="t.yaml")


def test_deeply_nested_yaml_is_refused_not_a_crash() -> None:
    deep = HEAD + "extra: " + "[" * 20000 + "]" * 20000 + "\n"
    refused(deep, "嵌套")


def test_answer_domain_product_is_capped_with_the_line() -> None:
    fields = "".join(f"  f{i}: " + " | ".join(f"c{j}" for j in range(50)) + "\n"
                     for i in range(6))
    uses = "".join(f"{{{{ answers.f{i} }}}}" for i in range(6))
    text = with_bye(uses).replace("  need: bool\n", "  need: bool\n" + fields)
    hits = refused(text, "组合")
    assert hits[0][0] == BYE_LINE + 6, hits


@pytest.mark.parametrize("expr", [
    "{{ 'x' * 10**7 }}",
    "{{ 10**10000000 }}",
    "{{ 姓名 * 100000 }}",
    "{% for a in 'xxxxxxxxxxxxxxxxxxxx' %}{% for b in 'xxxxxxxxxxxxxxxxxxxx' %}"
    "{% for c in 'xxxxxxxxxxxxxxxxxxxx' %}{% for d in 'xxxxxxxxxxxxxxxxxxxx' %}"
    "{% for e in 'xxxxxxxxxxxxxxxxxxxx' %}{% for f in 'xxxxxxxxxxxxxxxxxxxx' %}x"
    "{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
    "{% set a = 'xxxxxxxxxx' %}" + "{% set a = a ~ a %}" * 40 + "{{ a|length }}",
    "{{ 'aaaaaaaaaa'" + "|replace('a', 'aaaaaaaaaa')" * 12 + " }}",
    "{{ '%99999999d' % 1 }}",
    "{{ 姓名|truncate(10)|replace('张', 'x' * 5000) }}",
])
def test_prompts_that_would_hang_at_render_are_refused_at_validation(expr: str) -> None:
    hits = refused(with_bye(expr), "")
    lines = {line for line, _ in hits}
    assert BYE_LINE in lines, hits


def test_render_caps_hold_at_call_time_too() -> None:
    """A contact whose columns blow a prompt past the length cap: a clear error before
    dialling, not a 10-minute prompt."""
    script = parse_script(with_bye("{{ 姓名 }}{{ 姓名 }}{{ 姓名 }}{{ 姓名 }}{{ 姓名 }}"),
                          filename="t.yaml")
    long_name = "张" * (defaults.PROMPT_MAX_CHARS // 4)
    with pytest.raises(TemplateError, match="太长"):
        script.all_prompts({"姓名": long_name})


def test_ordinary_templates_are_untouched() -> None:
    got = validate_in_child(textwrap.dedent(with_bye("{{ 姓名|default('您') }}，祝您{{ 日期 }}愉快。")))
    assert got["ok"], got


def test_a_calls_prompts_are_not_parsed_again_for_the_next_call(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Listing a call's prompts (every call does, and the dispatcher's prerender for every
    attempt) parses each prompt template once per process: the next contact's call parses
    nothing (it parsed ~40 templates a call before)."""
    from callbot.dialogue import DialogueEngine
    from callbot.script import load_script, sandbox

    script = load_script("mask_reservation")
    first = DialogueEngine(script, {"姓名": "王伟"}).prompts()
    env = sandbox._env()
    real = env.parse
    parsed: list[str] = []

    def parse(source, *args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(env, "parse", parse)
    second = DialogueEngine(script, {"姓名": "李娜"}).prompts()
    assert parsed == []
    assert second != first and any("李娜" in p for p in second)
