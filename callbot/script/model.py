"""The template model: result fields, steps, handlers and the script itself, the names a
template may use (end reasons, handler kinds, variables) and the default prompts."""

from __future__ import annotations

import datetime as _dt
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from callbot import defaults
from callbot.exceptions import PromptLimitError, TemplateError
from callbot.intents import ALWAYS, INTENTS
from callbot.script.loader import Path_, TemplateIssue, _fail, _Lines
from callbot.script.sandbox import (
    _answer_fields,
    _check_deadline,
    _check_value,
    _compiled,
    _env,
    _limits,
    _today,
)

ANSWER_INTENTS = INTENTS
"""Intents an ``answers`` block may handle."""

HANDLER_KINDS = ("no_input", "no_match", "repeat", "wrong_person", "invalid", "later",
                 "emergency", "human", "stop")
"""Events an ask step (or the template-wide ``handlers``) may say what to do on; the intents
among them are heard at every question (``intents.ALWAYS``)."""

END_REASONS = ("completed", "declined", "callback", "stop", "no_input", "no_match",
               "wrong_person", "max_turns", "hung_up", "transfer", "transfer_failed", "emergency",
               "human")
"""How a dialogue can end (``engine.ended``). ``callback``: the resident asked to be called back
later (现在没空); the campaign retries the contact with its ``callback`` rule. ``stop``: the
resident asked not to be called again (the number goes on the do-not-call list when heard).
``transfer``: put through to the committee's duty phone (转人工); ``transfer_failed``: the duty
phone did not answer, the resident was told someone will call back and an urgent alert raised.
``emergency``: the resident is in trouble (摔了, 救命) and the script has no answer for it;
``human``: asked for a person (人工) where the script neither handles nor transfers it."""

FIELD_TYPES = ("bool", "int", "enum", "text")

ALIASES: dict[str, str] = {
    "姓名": "name", "电话": "phone", "手机": "phone", "地址": "address", "楼栋": "building",
    "房号": "room", "称呼": "title", "居委会": "committee", "日期": "date",
}
"""Chinese column name ↔ English variable name; a template may use either."""

BUILTIN_VARIABLES = ("居委会", "committee", "日期", "date", "answers")
"""Variables every prompt has besides the contact's columns."""


# --- the model ----------------------------------------------------------------------------------

@dataclass
class FieldSpec:
    """A result field: its type and range, used to check recorded values and to tabulate."""

    name: str
    type: str
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    label: str = ""

    def coerce(self, value: Any) -> Any:
        """*value* as this field stores it; ValueError (Chinese message) when it does not fit."""
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "是", "1"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "否", "0"):
                return False
            raise ValueError(f"{self.name} 只能是 true/false (must be a bool), 不是 {value!r}")
        if self.type == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(f"{self.name} 必须是整数 (must be an int), 不是 {value!r}")
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"{self.name} 必须是整数 (must be an int), 不是 {value!r}") from None
            if self.min is not None and number < self.min:
                raise ValueError(f"{self.name} 不能小于 {self.min} (below minimum)")
            if self.max is not None and number > self.max:
                raise ValueError(f"{self.name} 不能大于 {self.max} (above maximum)")
            return number
        if self.type == "enum":
            if str(value) not in self.choices:
                raise ValueError(f"{self.name} 只能是 {' | '.join(self.choices)} 之一, 不是 {value!r}")
            return str(value)
        return str(value)

    def domain(self) -> list[Any] | None:
        """Every value the field can hold when that is a short list (to pre-render prompts)."""
        if self.type == "bool":
            return [True, False]
        if self.type == "enum":
            return list(self.choices)
        if self.type == "int" and self.min is not None and self.max is not None \
                and self.max - self.min <= 50:
            return list(range(self.min, self.max + 1))
        return None

    def describe(self) -> str:
        if self.type == "int":
            lo = "" if self.min is None else str(self.min)
            hi = "" if self.max is None else str(self.max)
            return f"int {lo}–{hi}" if (lo or hi) else "int"
        if self.type == "enum":
            return " | ".join(self.choices)
        return self.type


@dataclass
class Handler:
    """What to do on an answer or an event: record, say, then go on (``next``) or end (``end``)."""

    say: str | None = None
    next: str | None = None
    end: str | None = None
    record: str | None = None
    set: dict[str, Any] = field(default_factory=dict)
    note: str | None = None
    retries: int | None = None
    transfer: bool = False
    """转人工: say ``say`` (or a default line), then put the resident through to the duty phone;
    the dialogue ends there (``transfer``, or ``transfer_failed`` with a call-back line). With
    ``next`` / ``end`` too, those say where to go when the committee has no duty phone."""
    path: Path_ = ()
    again: tuple[str, ...] = ()
    """Further ``say`` texts for the second, third … retry (``say: [first, then]``)."""

    def say_for(self, attempt: int) -> str | None:
        """What to say on retry number *attempt* (1 = first): the list's item, the last one after."""
        says = ([self.say] if self.say else []) + list(self.again)
        return says[min(attempt, len(says)) - 1] if says else None


@dataclass
class Step:
    """One step: a ``say`` (then ``next`` or ``end``) or an ``ask`` that waits for an answer."""

    name: str
    kind: str
    text: str
    next: str | None = None
    end: str | None = None
    barge_in: bool = True
    answers: dict[str, Handler] = field(default_factory=dict)
    keys: dict[str, str | int | bool] = field(default_factory=dict)
    timeout_s: float = defaults.DIALOGUE_LISTEN_TIMEOUT_S
    handlers: dict[str, Handler] = field(default_factory=dict)
    path: Path_ = ()
    audio: Path | None = None
    """A staff recording (WAV/MP3) played instead of TTS; ``text`` stays as its transcript."""

    def intents(self) -> list[str]:
        """Intents this question listens for: its answers, plus those every question hears
        (emergency, human, stop, later, repeat, wrong person)."""
        out = list(self.answers)
        for extra in ALWAYS:
            if extra not in out:
                out.append(extra)
        return out


@dataclass
class Script:
    """A validated template. Build with :func:`load_script` or :func:`parse_script`."""

    name: str
    title: str
    description: str
    voice: str | None
    requires: list[str]
    fields: dict[str, FieldSpec]
    steps: dict[str, Step]
    start: str
    max_turns: int
    handlers: dict[str, Handler]
    filename: str = "<template>"
    source: str = ""
    rate: str | None = None
    """Speaking rate for TTS, e.g. ``-10%`` (slower for the elderly); None = the engine's default."""
    end_silence_s: float | None = None
    """Silence that ends a reply on a call (``end_silence``, seconds); None = the call's default
    (``defaults.DIALOGUE_END_SILENCE_S``). Slow speakers pause longer inside a reply."""
    assistant: str | None = None
    """``assistant:`` — a short message left when a voice assistant, 来电秘书 or voicemail
    answers for the resident (callbot.announcements hears it); None (the default): the robot
    hangs up without a word. The call ends ``assistant`` either way (retried by policy)."""
    warnings: list[TemplateIssue] = field(default_factory=list)
    _lines: _Lines = field(default_factory=_Lines, repr=False)

    # -- prompts --

    def context(self, contact: Mapping[str, Any] | None = None, *,
                committee: str | None = None, date: _dt.date | str | None = None,
                answers: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The variables a prompt sees: the contact's columns under both Chinese and English
        names, ``居委会``/``committee``, ``日期``/``date`` and the ``answers`` recorded so far."""
        ctx: dict[str, Any] = {}
        for key, value in (contact or {}).items():
            ctx[str(key)] = "" if value is None else value
        if date is None:
            date = _today()
        if isinstance(date, _dt.date):
            date = f"{date.month}月{date.day}日"
        ctx.setdefault("居委会", committee or ctx.get("committee") or defaults.COMMITTEE_NAME)
        ctx.setdefault("日期", ctx.get("date") or date)
        for zh, en in ALIASES.items():
            if zh in ctx and en not in ctx:
                ctx[en] = ctx[zh]
            elif en in ctx and zh not in ctx:
                ctx[zh] = ctx[en]
        ctx["answers"] = dict(answers or {})
        return ctx

    def render(self, text: str, context: Mapping[str, Any]) -> str:
        """Render one prompt in the sandbox; TemplateError when a variable is missing,
        PromptLimitError when the prompt grows past a limit (length, numbers, render time)."""
        outer = getattr(_limits, "deadline", None)
        # thread CPU time, not wall time: on a loaded box (100 calls starting at once) a
        # trivial prompt waited > 0.5 s for the CPU and the call crashed
        _limits.deadline = time.thread_time() + defaults.PROMPT_RENDER_MAX_S
        try:
            pieces: list[str] = []
            size = 0
            for piece in _compiled(text).generate(dict(context)):
                size += len(piece)
                if size > defaults.PROMPT_MAX_CHARS:
                    _check_value("".join(pieces) + piece)
                _check_deadline()
                pieces.append(piece)
            return "".join(pieces).strip()
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(f"{self.filename}: 提示语无法生成 (prompt cannot be rendered): {exc}",
                                errors=[]) from exc
        finally:
            _limits.deadline = outer

    def texts(self) -> Iterator[tuple[Path_, str]]:
        """Every prompt text of the template, with its path."""
        for step in self.steps.values():
            yield step.path + (step.kind,), step.text
            for handler in itertools.chain(step.answers.values(), step.handlers.values()):
                if handler.say:
                    yield handler.path + ("say",), handler.say
        for handler in self.handlers.values():
            if handler.say:
                yield handler.path + ("say",), handler.say
        if self.assistant:
            yield ASSISTANT_PATH, self.assistant
        for handler in self._all_handlers():
            for i, text in enumerate(handler.again):
                yield handler.path + ("say", i + 1), text
        for kind, text in DEFAULT_SAY.items():
            yield ("<default>", kind), text

    def _all_handlers(self) -> Iterator[Handler]:
        for step in self.steps.values():
            yield from step.answers.values()
            yield from step.handlers.values()
        yield from self.handlers.values()

    def all_prompts(self, contact: Mapping[str, Any] | None = None, **kw: Any) -> list[str]:
        """Every text the robot may say to this contact, rendered (answers that prompts use are
        enumerated over their fields' values), so TTS can synthesise them all before dialling."""
        base = self.context(contact, **kw)
        out: list[str] = []
        seen: set[str] = set()
        # a step with a staff recording plays that recording, never its text
        recorded = {step.path + (step.kind,) for step in self.steps.values()
                    if step.audio is not None}
        for path, text in self.texts():
            if path in recorded:
                continue
            used = sorted(_answer_fields(text) & set(self.fields))
            domains = [self.fields[f].domain() or [] for f in used]
            combos = itertools.product(*domains) if used else [()]
            for combo in itertools.islice(combos, defaults.PROMPT_MAX_VARIANTS):
                ctx = dict(base)
                ctx["answers"] = dict(zip(used, combo, strict=True))
                try:
                    rendered = self.render(text, ctx)
                except PromptLimitError:
                    raise
                except TemplateError:
                    continue
                if rendered and rendered not in seen:
                    seen.add(rendered)
                    out.append(rendered)
        return out

    def check_columns(self, columns: Iterable[str]) -> None:
        """Raise TemplateError when the prompts use a variable the contact list has no column for."""
        issues = _check_variables(self, set(columns), self._lines)
        if any(i.level == "error" for i in issues):
            raise _fail(self.filename, issues)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (for ``callbot template show`` and the web)."""
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "voice": self.voice, "rate": self.rate, "requires": self.requires, "start": self.start,
            "max_turns": self.max_turns, "assistant": self.assistant,
            "fields": {n: f.describe() for n, f in self.fields.items()},
            "steps": {n: {"kind": s.kind, "text": s.text, "keys": {k: v for k, v in s.keys.items()},
                          "answers": list(s.answers), "next": s.next, "end": s.end}
                      for n, s in self.steps.items()},
        }


ASSISTANT_PATH: Path_ = ("assistant", "say")
"""Where the ``assistant:`` message is in a template (``assistant: 文字`` or ``{say: 文字}``)."""
ASSISTANT_MAX_CHARS = 120
"""A message left on a voice assistant is short: at most this many characters as written."""

DEFAULT_SAY: dict[str, str] = {
    "no_input": "您好，您还在听吗？",
    "no_match": "不好意思，我没有听清楚。",
    "repeat": "好的，我再说一遍。",
    "invalid": "不好意思，这个回答不在可选范围内。",
    "end_no_input": "您现在可能不方便接听，我们稍后再联系您。祝您生活愉快，再见。",
    "end_no_match": "不好意思，我没能听清您的回答，稍后会请工作人员再联系您。再见。",
    "end_wrong_person": "不好意思，打扰您了，祝您生活愉快，再见。",
    "end_max_turns": "感谢您的耐心，稍后会请工作人员再联系您。再见。",
    "end_completed": "感谢您的配合，再见。",
    "end_declined": "好的，打扰您了，再见。",
    "end_callback": "好的，那我们晚点再打给您。再见。",
    "transfer": "好的，正在为您转接社区值班人员，请稍等。",
    "end_transfer_failed": "不好意思，值班人员暂时没有接听。我们已经记下了，会尽快请工作人员给您回电。再见。",
    "end_transfer_failed_urgent": "不好意思，值班人员暂时没有接听。我们已经通知社区工作人员，会尽快联系您。"
                                  "情况紧急请立刻拨打120。",
    "end_emergency": "请您别着急，我们马上通知社区工作人员。情况紧急请立刻拨打120。",
    "end_human": "好的，我们会请社区工作人员尽快给您回电话。再见。",
    "end_stop": "好的，以后不再给您打这类电话了。打扰您了，再见。",
}
"""What the robot says when a template does not say otherwise (polite endings on every path)."""

DEFAULT_RETRIES = {"no_input": 1, "no_match": 2, "invalid": 2}
"""Reprompts before giving up: silence twice ends the call; two misunderstandings are retried."""


def _check_variables(script: Script, columns: set[str] | None, lines: _Lines) -> list[TemplateIssue]:
    """Undefined variables: every name a prompt uses must be a column of the list (or, without a
    list, be in ``requires``), a built-in, or an ``answers`` field."""
    issues: list[TemplateIssue] = []

    def known(name: str, pool: set[str]) -> bool:
        return name in pool or ALIASES.get(name) in pool or any(
            en == name and zh in pool for zh, en in ALIASES.items())

    pool = set(script.requires) if columns is None else set(columns)
    if columns is not None:
        for req in script.requires:
            if not known(req, pool):
                issues.append(TemplateIssue(script.filename, lines.of(("requires",)),
                                            f"名单缺少模板需要的列 {req!r}；请在名单里加上这一列 "
                                            f"(the list has no column {req!r})"))
    builtin = set(BUILTIN_VARIABLES)
    for path, text in script.texts():
        if path[0] == "<default>":
            continue
        try:
            ast = _env().parse(text)
        except TemplateSyntaxError:
            continue
        local = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
        reported: set[str] = set()
        for node in ast.find_all(nodes.Name):
            if node.ctx != "load" or node.name in local or node.name in reported:
                continue
            if node.name in builtin or known(node.name, pool):
                continue
            reported.add(node.name)
            where = "名单没有这一列" if columns is not None else "requires 里没有列出"
            issues.append(TemplateIssue(
                script.filename, lines.text_line(path, node.lineno),
                f"未定义的变量 {{{{ {node.name} }}}}：{where}；请改成名单里的列名，或加到 requires "
                f"(undefined variable {node.name!r})"))
        for field_name in _answer_fields(text):
            if field_name not in script.fields:
                issues.append(TemplateIssue(
                    script.filename, lines.text_line(path),
                    f"answers.{field_name} 不是 fields 里的字段 (unknown answer field)"))
    return issues
