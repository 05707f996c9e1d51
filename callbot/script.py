"""Dialogue templates: the YAML format staff write, its validation (with line numbers) and the
Jinja2 sandbox that renders prompts with a contact's columns.

A template (see docs/scripts.md for the guide)::

    name: mask_reservation            # ASCII id
    title: 口罩预约登记
    requires: [姓名]                   # contact columns the prompts use
    fields:                           # result fields, tabulated in reports
      need_masks: bool
      masks: int 0-5
    start: greet
    steps:
      greet: {say: "{{ 姓名 }}您好……", next: ask_need}
      ask_need:
        ask: "请问您家需要口罩吗？需要请按1，不需要请按2。"
        keys: {1: yes, 2: no}
        answers:
          yes: {set: {need_masks: true}, next: ask_count}
          no:  {set: {need_masks: false, masks: 0}, next: bye}
      bye: {say: "感谢您的配合，再见。", end: completed}
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from callbot import defaults
from callbot.exceptions import PromptLimitError, TemplateError
from callbot.intents import ALWAYS, DEFAULT_VALUES, INTENTS, parse_key_action

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

ALLOWED_FILTERS = frozenset({
    "default", "d", "upper", "lower", "trim", "replace", "int", "string", "length", "first",
    "last", "round", "join", "truncate", "title", "capitalize", "abs", "e", "escape",
})
"""Jinja2 filters a prompt may use; anything else (``attr``, ``format``…) is refused."""

_FORBIDDEN_ATTRS = frozenset({"mro", "format", "format_map", "gi_frame", "gi_code", "cr_frame",
                              "f_globals", "f_locals", "func_globals", "func_code", "im_func",
                              "im_self", "tb_frame", "co_code"})
_ALLOWED_NODES: frozenset[type[nodes.Node]] = frozenset({
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Const, nodes.Name, nodes.Getattr,
    nodes.Getitem, nodes.Slice, nodes.If, nodes.CondExpr, nodes.Filter, nodes.Test,
    nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos,
    nodes.Concat, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod,
    nodes.Pow, nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Keyword,
})
"""What a prompt may contain: variables, conditions, filters and arithmetic. No loops, no
``set``/``with`` (a value reused is how a short template doubles a string 40 times), no calls,
macros or includes."""
_STATEMENT_WORDS = {"For": "for", "Assign": "set", "AssignBlock": "set", "With": "with",
                    "Block": "block", "Macro": "macro", "CallBlock": "call",
                    "FilterBlock": "filter", "Include": "include", "Import": "import",
                    "FromImport": "from import", "Extends": "extends"}
_STEP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^[\u4e00-\u9fff][\u4e00-\u9fffA-Za-z0-9_]*$")
_KEY_RE = re.compile(r"^[0-9*#]$")
_TEMPLATE_DIR = "templates"


# --- errors -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateIssue:
    """One problem in a template: where (file, line) and what to fix (Chinese, then English)."""

    file: str
    line: int
    message: str
    level: str = "error"

    def __str__(self) -> str:
        tag = "" if self.level == "error" else f"[{self.level}] "
        return f"{self.file}:{self.line}: {tag}{self.message}"


def _fail(filename: str, issues: list[TemplateIssue]) -> TemplateError:
    errors = [i for i in issues if i.level == "error"]
    lines = "\n".join(str(e) for e in errors)
    return TemplateError(f"模板有 {len(errors)} 处错误 (template has {len(errors)} error(s)):\n{lines}",
                         errors=errors)


# --- YAML with line numbers ---------------------------------------------------------------------

Path_ = tuple[Any, ...]


class _Lines:
    """Line numbers (1-based) of every value and key in the YAML, by path."""

    def __init__(self) -> None:
        self.value: dict[Path_, int] = {}
        self.key: dict[Path_, int] = {}
        self.block: dict[Path_, bool] = {}

    def of(self, path: Path_, default: int = 1) -> int:
        while path:
            if path in self.key:
                return self.key[path]
            if path in self.value:
                return self.value[path]
            path = path[:-1]
        return default

    def text_line(self, path: Path_, inner_line: int = 1) -> int:
        """Line of line *inner_line* inside the string at *path* (block scalars start a line later)."""
        base = self.value.get(path, self.of(path))
        return base + (1 if self.block.get(path) else 0) + max(inner_line, 1) - 1


class _Budget:
    """YAML values and alias uses left while converting one document (aliases expand)."""

    def __init__(self) -> None:
        self.nodes = defaults.TEMPLATE_MAX_NODES
        self.aliases = defaults.TEMPLATE_MAX_ALIASES
        self.seen: set[int] = set()


class _TooBig(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


def _size_issue(text: str, filename: str) -> TemplateIssue | None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= defaults.TEMPLATE_MAX_BYTES:
        return None
    return TemplateIssue(filename, 1, f"模板太大（{size // 1024} KB，上限 "
                                      f"{defaults.TEMPLATE_MAX_BYTES // 1024} KB）；话术模板通常只有几 KB "
                                      f"(template too large)")


def _load_yaml(text: str, filename: str) -> tuple[Any, _Lines]:
    lines = _Lines()
    too_big = _size_issue(text, filename)
    if too_big is not None:
        raise _fail(filename, [too_big])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise TemplateError("empty", errors=[TemplateIssue(
                filename, 1, "模板是空的 (the template is empty)")])
        issues: list[TemplateIssue] = []
        data = _convert(loader, node, (), lines, issues, filename, _Budget())
    except _TooBig as exc:
        raise _fail(filename, [TemplateIssue(filename, exc.line, str(exc))]) from None
    except RecursionError:
        raise _fail(filename, [TemplateIssue(
            filename, 1, "YAML 嵌套太深，请检查括号和缩进 (YAML nested too deeply)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise _fail(filename, [TemplateIssue(
            filename, line, f"YAML 格式错误：{what}。请检查缩进、冒号和引号 (YAML error: {what})")]) from None
    except yaml.YAMLError as exc:
        raise _fail(filename, [TemplateIssue(filename, 1, f"YAML 格式错误 (YAML error): {exc}")]) from None
    finally:
        loader.dispose()
    if issues:
        raise _fail(filename, issues)
    return data, lines


def safe_yaml(text: str, filename: str = "<template>") -> Any:
    """The YAML document *text* as plain data, with the template limits (size, aliases, values,
    nesting) applied: TemplateError instead of a process that runs out of memory."""
    return _load_yaml(text, filename)[0]


def _convert(loader: yaml.SafeLoader, node: yaml.Node, path: Path_, lines: _Lines,
             issues: list[TemplateIssue], filename: str, budget: _Budget) -> Any:
    budget.nodes -= 1
    if budget.nodes < 0:
        raise _TooBig(node.start_mark.line + 1,
                      f"模板太复杂：展开 YAML 别名（*引用）后超过 {defaults.TEMPLATE_MAX_NODES} 个值；"
                      f"请少用别名，直接写出内容 (too many values once aliases are expanded)")
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in budget.seen:  # the composer hands an alias back as the anchored node
            budget.aliases -= 1
            if budget.aliases < 0:
                raise _TooBig(node.start_mark.line + 1,
                              f"YAML 别名（*引用）太多，上限 {defaults.TEMPLATE_MAX_ALIASES} 个 "
                              f"(too many aliases)")
        budget.seen.add(id(node))
    lines.value[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are taken as written: `yes:`/`no:` stay "yes"/"no" (YAML 1.1 would make them bools).
            if isinstance(key_node, yaml.ScalarNode):
                key = str(key_node.value)
            else:  # never str() a collection node: its repr walks every alias again
                key = f"<line {key_node.start_mark.line + 1}>"
                issues.append(TemplateIssue(filename, key_node.start_mark.line + 1,
                                            "键只能是文字，不能是列表或映射 (keys must be text)"))
            if key in out:
                issues.append(TemplateIssue(filename, key_node.start_mark.line + 1,
                                            f"重复的键 {key!r}，请删除其中一个 (duplicate key)"))
            lines.key[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _convert(loader, value_node, path + (key,), lines, issues, filename,
                                budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, path + (i,), lines, issues, filename, budget)
                for i, item in enumerate(node.value)]
    lines.block[path] = node.style in ("|", ">")
    return loader.construct_object(node, deep=True)


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
        _limits.deadline = time.monotonic() + defaults.PROMPT_RENDER_MAX_S
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
            "max_turns": self.max_turns,
            "fields": {n: f.describe() for n, f in self.fields.items()},
            "steps": {n: {"kind": s.kind, "text": s.text, "keys": {k: v for k, v in s.keys.items()},
                          "answers": list(s.answers), "next": s.next, "end": s.end}
                      for n, s in self.steps.items()},
        }


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


def _today() -> _dt.date:
    try:
        from zoneinfo import ZoneInfo

        return _dt.datetime.now(ZoneInfo(defaults.TIMEZONE)).date()
    except Exception:  # noqa: BLE001 — no tz database: local date is good enough for a prompt
        return _dt.date.today()


_limits = threading.local()  # .deadline: monotonic time by which the current render must end


def _limit_error(message: str) -> PromptLimitError:
    return PromptLimitError(message, errors=[])


def _check_deadline() -> None:
    deadline = getattr(_limits, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise _limit_error(f"提示语生成太慢（超过 {defaults.PROMPT_RENDER_MAX_S:g} 秒）；请简化这句提示语 "
                           f"(prompt takes too long to render)")


def _check_value(value: Any) -> Any:
    """Refuse a value made while rendering that is already too big to say or to keep."""
    _check_deadline()
    if isinstance(value, str | list | tuple) and len(value) > defaults.PROMPT_MAX_CHARS:
        raise _limit_error(f"提示语太长（超过 {defaults.PROMPT_MAX_CHARS} 字）；电话里的一句话应当简短 "
                           f"(prompt too long)")
    if isinstance(value, int) and not isinstance(value, bool) \
            and value.bit_length() > defaults.PROMPT_MAX_INT_BITS:
        raise _limit_error("提示语里的数字太大 (number too large)")
    return value


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse, before computing it, an operation whose result would be too big."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))
    if operator == "**" and ints and right > 0 and \
            max(left.bit_length(), 1) * right > defaults.PROMPT_MAX_INT_BITS:
        raise _limit_error("提示语里的数字太大 (number too large)")
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) \
                    and len(seq) * n > defaults.PROMPT_MAX_CHARS:
                raise _limit_error(f"提示语太长（超过 {defaults.PROMPT_MAX_CHARS} 字）；电话里的一句话应当简短 "
                                   f"(prompt too long)")
        if ints and left.bit_length() + right.bit_length() > defaults.PROMPT_MAX_INT_BITS:
            raise _limit_error("提示语里的数字太大 (number too large)")
    if operator == "%" and isinstance(left, str):
        raise _limit_error("提示语里不允许用 % 格式化文字（安全沙箱）(sandbox: % formatting refused)")


class _PromptEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, plus limits on what a prompt may compute: arithmetic and filters are checked
    before and after (no ``'x'*10**7``, no ``10**10000000``), strings stay under
    ``PROMPT_MAX_CHARS``, a render ends within ``PROMPT_RENDER_MAX_S``. Intercepting the
    operators also stops Jinja2 from folding them at compile time."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_value(super().call_binop(context, operator, left, right))


def _guarded_filter(fn: Any) -> Any:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for arg in itertools.chain(args, kwargs.values()):
            if isinstance(arg, str | list | tuple):
                _check_value(arg)
        return _check_value(fn(*args, **kwargs))

    functools.update_wrapper(guarded, fn)
    if hasattr(fn, "jinja_pass_arg"):
        guarded.jinja_pass_arg = fn.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


_ENV: ImmutableSandboxedEnvironment | None = None


def _env() -> ImmutableSandboxedEnvironment:
    global _ENV
    if _ENV is None:
        env = _PromptEnvironment(undefined=StrictUndefined, autoescape=False,
                                 keep_trailing_newline=False)
        for name in ALLOWED_FILTERS:
            env.filters[name] = _guarded_filter(env.filters[name])
        _ENV = env
    return _ENV


@functools.lru_cache(maxsize=4096)
def _compiled(text: str) -> Any:
    """A prompt compiled once (compiling costs milliseconds; a call renders prompts per turn)."""
    return _env().from_string(text)


def _answer_fields(text: str) -> set[str]:
    try:
        ast = _env().parse(text)
    except TemplateSyntaxError:
        return set()
    out = set()
    for attr in ast.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "answers":
            out.add(attr.attr)
    for item in ast.find_all(nodes.Getitem):
        if isinstance(item.node, nodes.Name) and item.node.name == "answers" \
                and isinstance(item.arg, nodes.Const):
            out.add(str(item.arg.value))
    return out


# --- parsing and validation ---------------------------------------------------------------------

_TOP_KEYS = {"name", "title", "description", "voice", "rate", "requires", "fields", "start", "steps",
             "max_turns", "handlers", "end_silence"}
_STEP_KEYS = {"say", "ask", "next", "end", "barge_in", "answers", "keys", "timeout", "audio",
              *HANDLER_KINDS}
_AUDIO_SUFFIXES = (".wav", ".mp3")
_HANDLER_KEYS = {"say", "next", "end", "record", "set", "note", "retries", "transfer"}
_FIELD_RE = re.compile(r"^\s*int\s*(?:(-?\d+)\s*(?:-|–|—|~|\.\.)\s*(-?\d+))?\s*$")


class _Checker:
    def __init__(self, filename: str, lines: _Lines) -> None:
        self.filename = filename
        self.lines = lines
        self.issues: list[TemplateIssue] = []
        self.base_dir: Path | None = None  # where relative `audio:` paths are resolved

    def error(self, path: Path_, message: str, *, line: int | None = None) -> None:
        self.issues.append(TemplateIssue(self.filename, line or self.lines.of(path), message))

    def warn(self, path: Path_, message: str) -> None:
        self.issues.append(TemplateIssue(self.filename, self.lines.of(path), message, "warning"))


def _parse_field(name: str, spec: Any, path: Path_, chk: _Checker) -> FieldSpec | None:
    label = ""
    if isinstance(spec, dict):
        label = str(spec.get("label", ""))
        ftype = str(spec.get("type", ""))
        if ftype == "int":
            return FieldSpec(name, "int", spec.get("min"), spec.get("max"), label=label)
        if ftype == "enum":
            choices = spec.get("choices") or []
            if not isinstance(choices, list) or not choices:
                chk.error(path, f"字段 {name} 是 enum，请用 choices 列出可选值 (enum needs choices)")
                return None
            return FieldSpec(name, "enum", choices=tuple(str(c) for c in choices), label=label)
        if ftype in ("bool", "text"):
            return FieldSpec(name, ftype, label=label)
        chk.error(path, f"字段 {name} 的类型 {ftype!r} 不认识，可用 {', '.join(FIELD_TYPES)} "
                        f"(unknown field type)")
        return None
    if not isinstance(spec, str):
        chk.error(path, f"字段 {name} 的写法不对，例如 `masks: int 0-5` 或 `welfare: ok | needs_help` "
                        f"(bad field spec)")
        return None
    text = spec.strip()
    if text in ("bool", "text"):
        return FieldSpec(name, text)
    m = _FIELD_RE.match(text)
    if m:
        lo, hi = m.group(1), m.group(2)
        if lo is not None and int(lo) > int(hi):
            chk.error(path, f"字段 {name} 的范围 {lo}-{hi} 下限大于上限 (min > max)")
            return None
        return FieldSpec(name, "int", int(lo) if lo else None, int(hi) if hi else None)
    if "|" in text:
        choices = tuple(c.strip() for c in text.split("|") if c.strip())
        if len(choices) >= 2 and all(re.match(r"^[\w-]+$", c) for c in choices):
            return FieldSpec(name, "enum", choices=choices)
    chk.error(path, f"字段 {name} 的类型 {text!r} 不认识；请写 bool、text、int 0-5 或 a | b | c "
                    f"(unknown field type)")
    return None


def _parse_handler(raw: Any, path: Path_, chk: _Checker, *, kind: str) -> Handler | None:
    if isinstance(raw, str):
        # shorthand: `no: bye` means go to step bye
        return Handler(next=raw, path=path)
    if raw is None:
        return Handler(path=path)
    if not isinstance(raw, dict):
        chk.error(path, f"{kind} 的写法不对：应为步骤名或 {{say/next/end/record/set}} (bad handler)")
        return None
    for key in raw:
        if key not in _HANDLER_KEYS:
            chk.error(path + (key,), f"{kind} 里不认识的键 {key!r}；可用 {', '.join(sorted(_HANDLER_KEYS))} "
                                     f"(unknown key)")
    sets = raw.get("set") or {}
    if not isinstance(sets, dict):
        chk.error(path + ("set",), "set 应是 字段: 值 的映射 (set must be a mapping)")
        sets = {}
    say_raw = raw.get("say")
    again: tuple[str, ...] = ()
    if isinstance(say_raw, list):
        if not say_raw or not all(isinstance(x, str) and x.strip() for x in say_raw):
            chk.error(path + ("say",), "say 列表里每一项都应是文字 (each say in the list must be text)")
            say_raw = None
        else:
            say_raw, again = say_raw[0], tuple(str(x) for x in say_raw[1:])
    retries = raw.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)
                                or not 0 <= retries <= 5):
        chk.error(path + ("retries",), "retries 应是 0 到 5 的整数 (retries must be 0–5)")
        retries = None
    transfer = raw.get("transfer", False)
    if not isinstance(transfer, bool):
        chk.error(path + ("transfer",), "transfer 只能写 true 或 false (transfer must be true/false)")
        transfer = False
    return Handler(
        transfer=transfer,
        say=None if say_raw is None else str(say_raw), again=again,
        next=None if raw.get("next") is None else str(raw["next"]),
        end=None if raw.get("end") is None else str(raw["end"]),
        record=None if raw.get("record") is None else str(raw["record"]),
        set={str(k): v for k, v in sets.items()},
        note=None if raw.get("note") is None else str(raw["note"]),
        retries=retries, path=path,
    )


def _parse_step(name: str, raw: Any, path: Path_, chk: _Checker) -> Step | None:
    if not _STEP_NAME_RE.match(name):
        chk.error(path, f"步骤名 {name!r} 只能用字母、数字、下划线或汉字 (bad step name)")
    if not isinstance(raw, dict):
        chk.error(path, f"步骤 {name} 应是一个映射，含 say 或 ask (a step is a mapping with say or ask)")
        return None
    for key in raw:
        if key not in _STEP_KEYS:
            chk.error(path + (key,), f"步骤 {name} 里不认识的键 {key!r}；可用 "
                                     f"{', '.join(sorted(_STEP_KEYS))} (unknown key)")
    if ("say" in raw) == ("ask" in raw):
        chk.error(path, f"步骤 {name} 必须有 say 或 ask 之一 (a step needs exactly one of say/ask)")
        return None
    kind = "ask" if "ask" in raw else "say"
    text = raw.get(kind)
    if not isinstance(text, str) or not text.strip():
        chk.error(path + (kind,), f"步骤 {name} 的 {kind} 文字是空的 (empty prompt)")
        text = ""
    step = Step(name=name, kind=kind, text=str(text), path=path,
                next=None if raw.get("next") is None else str(raw["next"]),
                end=None if raw.get("end") is None else str(raw["end"]),
                barge_in=bool(raw.get("barge_in", kind == "ask")))
    timeout = raw.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= 60:
            chk.error(path + ("timeout",), "timeout 应是 1 到 60 秒 (timeout must be 1–60 s)")
        else:
            step.timeout_s = float(timeout)
    if "audio" in raw:
        step.audio = _parse_audio(name, raw["audio"], path + ("audio",), chk)
    if kind == "say":
        for key in ("answers", "keys", *HANDLER_KINDS):
            if key in raw:
                chk.error(path + (key,), f"say 步骤 {name} 不等回答，不能有 {key}；要提问请用 ask "
                                         f"(a say step cannot have {key})")
        if step.next is None and step.end is None:
            chk.error(path, f"步骤 {name} 说完后去哪里？请写 next: 步骤名 或 end: completed "
                            f"(say step needs next or end)")
        if step.next is not None and step.end is not None:
            chk.error(path, f"步骤 {name} 不能同时有 next 和 end (both next and end)")
        return step
    answers = raw.get("answers")
    if not isinstance(answers, dict) or not answers:
        chk.error(path + ("answers",), f"提问步骤 {name} 需要 answers：每种回答(yes/no/quantity…)去哪一步 "
                                       f"(ask step needs answers)")
        answers = {}
    for intent, handler_raw in answers.items():
        hpath = path + ("answers", intent)
        if intent not in ANSWER_INTENTS:
            chk.error(hpath, f"回答类型 {intent!r} 不认识；可用 {', '.join(ANSWER_INTENTS)} "
                             f"(unknown intent)")
            continue
        handler = _parse_handler(handler_raw, hpath, chk, kind=f"answers.{intent}")
        if handler is not None:
            if handler.next is None and handler.end is None and not handler.transfer:
                if step.next is None and step.end is None:
                    chk.error(hpath, f"回答 {intent} 之后去哪里？请写 next 或 end "
                                     f"(answer needs next or end)")
                handler.next, handler.end = step.next, step.end
            step.answers[intent] = handler
    keys = raw.get("keys")
    if keys is not None:
        if not isinstance(keys, dict):
            chk.error(path + ("keys",), "keys 应是 按键: 回答 的映射，如 {1: yes, 2: no} (keys must be a mapping)")
        else:
            for key, spec in keys.items():
                kpath = path + ("keys", key)
                if not _KEY_RE.match(str(key)):
                    chk.error(kpath, f"按键 {key!r} 无效，只能是 0-9、* 或 # (bad key)")
                    continue
                try:
                    intent, _value = parse_key_action(spec)
                except ValueError as exc:
                    chk.error(kpath, str(exc))
                    continue
                if intent not in step.answers and intent not in ALWAYS:
                    chk.error(kpath, f"按键 {key} 对应 {intent}，但 answers 里没有 {intent} "
                                     f"(key maps to an intent the step does not handle)")
                plain = intent != "quantity" and _value == DEFAULT_VALUES[intent]
                step.keys[str(key)] = intent if plain else f"{intent}={_value}"
    else:
        chk.warn(path, f"提问步骤 {name} 没有按键备选 (keys)；老人说不清时可以按键 "
                       f"(no DTMF fallback on this question)")
    for kind_ in HANDLER_KINDS:
        if kind_ in raw:
            handler = _parse_handler(raw[kind_], path + (kind_,), chk, kind=kind_)
            if handler is not None:
                step.handlers[kind_] = handler
    return step


def _parse_audio(name: str, raw: Any, path: Path_, chk: _Checker) -> Path | None:
    if not isinstance(raw, str) or not raw.strip():
        chk.error(path, f"步骤 {name} 的 audio 应是录音文件的路径 (audio must be a file path)")
        return None
    audio = Path(raw.strip()).expanduser()
    if audio.suffix.lower() not in _AUDIO_SUFFIXES:
        chk.error(path, f"步骤 {name} 的录音 {raw!r} 必须是 .wav 或 .mp3 文件 "
                        f"(audio must be a .wav or .mp3 file)")
        return None
    if not audio.is_absolute():
        audio = (chk.base_dir or Path.cwd()) / audio
    if not audio.is_file():
        chk.error(path, f"步骤 {name} 的录音文件 {raw!r} 不存在（相对路径按模板文件所在目录）"
                        f"(audio file not found: {audio})")
        return None
    return audio


def parse_script(text: str, *, filename: str = "<template>",
                 columns: Iterable[str] | None = None,
                 base_dir: str | os.PathLike[str] | None = None) -> Script:
    """Parse and validate a template; TemplateError lists every problem with its line.
    *base_dir*: where relative ``audio:`` paths are (default: the folder of *filename*)."""
    data, lines = _load_yaml(text, filename)
    chk = _Checker(filename, lines)
    if base_dir is not None:
        chk.base_dir = Path(base_dir)
    elif "audio:" in text:
        try:
            if Path(filename).is_file():
                chk.base_dir = Path(filename).resolve().parent
        except (OSError, ValueError):
            pass
    if not isinstance(data, dict):
        raise _fail(filename, [TemplateIssue(filename, 1, "模板最外层应是 键: 值 的映射 "
                                                          "(top level must be a mapping)")])
    for key in data:
        if key not in _TOP_KEYS:
            chk.error((key,), f"不认识的键 {key!r}；可用 {', '.join(sorted(_TOP_KEYS))} (unknown key)")
    name = data.get("name")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_-]+$", name or ""):
        chk.error(("name",), "name 必须有，只能用英文字母、数字、下划线，如 mask_reservation "
                             "(name is required: letters, digits, _)")
        name = str(name or "")
    title = str(data.get("title") or name)
    requires = data.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        chk.error(("requires",), "requires 应是列名的列表，如 [姓名] (requires must be a list)")
        requires = []
    max_turns = data.get("max_turns", defaults.DIALOGUE_MAX_TURNS)
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or not 1 <= max_turns <= 100:
        chk.error(("max_turns",), "max_turns 应是 1 到 100 的整数 (max_turns must be 1–100)")
        max_turns = defaults.DIALOGUE_MAX_TURNS
    fields: dict[str, FieldSpec] = {}
    raw_fields = data.get("fields") or {}
    if not isinstance(raw_fields, dict):
        chk.error(("fields",), "fields 应是 字段名: 类型 的映射 (fields must be a mapping)")
        raw_fields = {}
    for fname, spec in raw_fields.items():
        parsed = _parse_field(fname, spec, ("fields", fname), chk)
        if parsed is not None:
            fields[fname] = parsed
    handlers: dict[str, Handler] = {}
    raw_handlers = data.get("handlers") or {}
    if not isinstance(raw_handlers, dict):
        chk.error(("handlers",), "handlers 应是映射 (handlers must be a mapping)")
        raw_handlers = {}
    for kind, raw in raw_handlers.items():
        if kind not in HANDLER_KINDS:
            chk.error(("handlers", kind), f"handlers 里不认识 {kind!r}；可用 {', '.join(HANDLER_KINDS)}")
            continue
        handler = _parse_handler(raw, ("handlers", kind), chk, kind=kind)
        if handler is not None:
            handlers[kind] = handler
    steps: dict[str, Step] = {}
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, dict) or not raw_steps:
        chk.error(("steps",), "steps 必须有，至少一个步骤 (steps are required)")
        raw_steps = {}
    for sname, raw in raw_steps.items():
        step = _parse_step(sname, raw, ("steps", sname), chk)
        if step is not None:
            steps[sname] = step
    start = data.get("start", next(iter(raw_steps), ""))
    script = Script(name=name, title=title, description=str(data.get("description") or ""),
                    voice=None if data.get("voice") is None else str(data["voice"]),
                    requires=list(requires), fields=fields, steps=steps, start=str(start),
                    max_turns=max_turns, handlers=handlers, filename=filename, source=text,
                    rate=None if data.get("rate") is None else str(data["rate"]), _lines=lines)
    end_silence = data.get("end_silence")
    if end_silence is not None:
        if isinstance(end_silence, bool) or not isinstance(end_silence, int | float) \
                or not 0.2 <= end_silence <= 3:
            chk.error(("end_silence",), "end_silence 应是 0.2 到 3 秒 (end_silence must be 0.2–3 s)")
        else:
            script.end_silence_s = float(end_silence)
    if script.rate is not None and not re.match(r"^[+-]\d{1,2}%$", script.rate):
        chk.error(("rate",), "rate 应写成 -10% 或 +5% 这样的百分比 (rate must look like -10%)")
    if steps and start not in raw_steps:
        chk.error(("start",), f"开始步骤 {start!r} 不存在 (start step does not exist)")
    _check_flow(script, chk)
    _check_records(script, chk)
    _check_prompts(script, chk)
    chk.issues += _check_variables(script, None if columns is None else set(columns), lines)
    _check_render(script, chk)
    script.warnings = [i for i in chk.issues if i.level != "error"]
    if any(i.level == "error" for i in chk.issues):
        unique = list(dict.fromkeys(chk.issues))
        raise _fail(filename, sorted(unique, key=lambda i: i.line))
    return script


def _targets(script: Script, step: Step) -> Iterator[tuple[Path_, str | None, str | None]]:
    """(path, next, end) of every way out of *step* the template writes."""
    if step.kind == "say":
        yield step.path, step.next, step.end
        return
    handlers = [*step.answers.values(), *step.handlers.values(),
                *(h for kind, h in script.handlers.items() if kind not in step.handlers)]
    for handler in handlers:
        if handler.transfer:  # the transfer ends the call; next / end: where, with no duty phone
            yield handler.path, None, "transfer"
            if handler.next is None and handler.end is None:
                continue
        yield handler.path, handler.next, handler.end


def _check_flow(script: Script, chk: _Checker) -> None:
    steps = script.steps
    edges: dict[str, set[str]] = {n: set() for n in steps}
    ends: set[str] = set()
    for sname, step in steps.items():
        for path, nxt, end in _targets(script, step):
            if nxt is not None and end is not None:
                chk.error(path, "不能同时写 next 和 end (both next and end)")
            if end is not None:
                if end not in END_REASONS:
                    chk.error(path + ("end",), f"结束原因 {end!r} 不认识；可用 {', '.join(END_REASONS)} "
                                               f"(unknown end reason)")
                ends.add(sname)
            if nxt is not None:
                if nxt not in steps:
                    hint = _closest(nxt, steps)
                    chk.error(path + ("next",) if path + ("next",) in chk.lines.value else path,
                              f"下一步 {nxt!r} 不存在{('，是不是 ' + repr(hint) + '？') if hint else ''}"
                              f" (unknown step target {nxt!r})")
                else:
                    edges[sname].add(nxt)
    if script.start not in steps:
        return
    seen = {script.start}
    todo = [script.start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for sname in steps:
        if sname not in seen:
            chk.error(steps[sname].path, f"步骤 {sname} 永远走不到（没有任何步骤指向它）；请删除或从别的步骤 "
                                         f"next 到它 (unreachable step)")
    # steps from which no `end` can be reached: a loop with no exit
    can_end = set(ends)
    changed = True
    while changed:
        changed = False
        for sname, outs in edges.items():
            if sname not in can_end and outs & can_end:
                can_end.add(sname)
                changed = True
    for sname in steps:
        if sname in seen and sname not in can_end:
            chk.error(steps[sname].path, f"步骤 {sname} 所在的流程是没有出口的循环：从这里走不到任何 end；"
                                         f"请让某个回答 end: completed (loop with no exit)")


def _closest(name: str, choices: Iterable[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, list(choices), n=1)
    return found[0] if found else None


def _check_records(script: Script, chk: _Checker) -> None:
    handlers = [(h, intent) for s in script.steps.values() for intent, h in s.answers.items()]
    handlers += [(h, kind) for s in script.steps.values() for kind, h in s.handlers.items()]
    handlers += [(h, kind) for kind, h in script.handlers.items()]
    for handler, intent in handlers:
        for fname in (handler.record, handler.note):
            if fname is not None and fname not in script.fields:
                chk.error(handler.path, f"字段 {fname!r} 没有在 fields 里声明 (undeclared field)")
        if handler.record is not None and handler.record in script.fields:
            spec = script.fields[handler.record]
            if intent not in ANSWER_INTENTS or intent in ("repeat", "wrong_person", "later"):
                chk.error(handler.path + ("record",), f"{intent} 没有可记录的回答值；请用 set "
                                                      f"(nothing to record for {intent})")
            elif intent == "quantity" and spec.type not in ("int", "text"):
                chk.error(handler.path + ("record",), f"数量要记在 int 字段，{spec.name} 是 {spec.type} "
                                                      f"(a quantity needs an int field)")
            elif intent in ("yes", "no") and spec.type not in ("bool", "text"):
                chk.error(handler.path + ("record",), f"是/否要记在 bool 字段，{spec.name} 是 {spec.type} "
                                                      f"(yes/no needs a bool field)")
        for fname, value in handler.set.items():
            if fname not in script.fields:
                chk.error(handler.path + ("set", fname), f"字段 {fname!r} 没有在 fields 里声明 "
                                                         f"(undeclared field)")
                continue
            try:
                script.fields[fname].coerce(value)
            except ValueError as exc:
                chk.error(handler.path + ("set", fname), str(exc))


def _check_prompts(script: Script, chk: _Checker) -> None:
    for path, text in script.texts():
        if path[0] == "<default>":
            continue
        try:
            ast = _env().parse(text)
        except TemplateSyntaxError as exc:
            chk.error(path, f"提示语模板语法错误：{(exc.message or '').rstrip('.')}。请检查 {{{{ }}}} 是否成对 "
                            f"(Jinja2 syntax error)", line=chk.lines.text_line(path, exc.lineno))
            continue
        for problem, lineno in _sandbox_problems(ast):
            chk.error(path, problem, line=chk.lines.text_line(path, lineno))


def _sample(spec: FieldSpec) -> list[Any]:
    """Values a field can hold, or one typical value when there are too many to list."""
    domain = spec.domain()
    if domain:
        return domain
    if spec.type == "int":
        return [spec.min if spec.min is not None else 1]
    return ["好的"]


def _check_render(script: Script, chk: _Checker) -> None:
    """Caps that keep a template from hanging a page or a call: how many answer combinations a
    prompt depends on, how many prompt variants the template has, and (when nothing else is
    wrong) each variant actually rendered once with sample values under the render limits."""
    plans: list[tuple[Path_, str, list[str], int]] = []
    total = 0
    for path, text in script.texts():
        if path[0] == "<default>":
            continue
        used = sorted(_answer_fields(text) & set(script.fields))
        n = 1
        for f in used:
            n *= len(_sample(script.fields[f]))
        line = chk.lines.text_line(path)
        if n > defaults.PROMPT_MAX_VARIANTS:
            sizes = " × ".join(str(len(_sample(script.fields[f]))) for f in used)
            chk.error(path, f"这句提示语用到 {len(used)} 个回答字段，组合有 {sizes} = {n} 种（上限 "
                            f"{defaults.PROMPT_MAX_VARIANTS}）；请拆成几句，或少用 answers "
                            f"(too many answer combinations)", line=line)
            continue
        total += n
        plans.append((path, text, used, line))
    if total > defaults.TEMPLATE_MAX_PROMPTS:
        chk.error(("steps",), f"模板的提示语组合共 {total} 种（上限 {defaults.TEMPLATE_MAX_PROMPTS}），"
                              f"拨号前无法全部合成；请减少用到 answers 的提示语 (too many prompt variants)")
        return
    if any(i.level == "error" for i in chk.issues):
        return  # render only what passed every other check
    base = script.context({name: "张三" for name in script.requires})
    started = time.monotonic()
    for path, text, used, line in plans:
        for combo in itertools.product(*(_sample(script.fields[f]) for f in used)):
            ctx = dict(base)
            ctx["answers"] = dict(zip(used, combo, strict=True))
            try:
                script.render(text, ctx)
            except PromptLimitError as exc:
                chk.error(path, str(exc), line=line)
                break
            except TemplateError:
                break  # a missing variable and the like: the other checks report those
            if time.monotonic() - started > defaults.TEMPLATE_RENDER_MAX_S:
                chk.error(path, f"模板的提示语生成太慢（超过 {defaults.TEMPLATE_RENDER_MAX_S:g} 秒）"
                                f"(template takes too long to render)", line=line)
                return


def _sandbox_problems(ast: nodes.Template) -> Iterator[tuple[str, int]]:
    """Everything in a prompt that could reach outside the sandbox: private attributes, calls,
    imports, unknown filters. Refused at validation, not at call time."""
    for node in ast.find_all(nodes.Node):
        lineno = getattr(node, "lineno", 1) or 1
        if isinstance(node, nodes.Getattr):
            if node.attr.startswith("_") or node.attr in _FORBIDDEN_ATTRS:
                yield (f"不允许访问属性 .{node.attr}（安全沙箱）；提示语只能用名单里的列 "
                       f"(sandbox: attribute {node.attr!r} refused)", lineno)
        elif isinstance(node, nodes.Getitem):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and (
                    node.arg.value.startswith("_") or node.arg.value in _FORBIDDEN_ATTRS):
                yield (f"不允许访问 [{node.arg.value!r}]（安全沙箱）(sandbox: item refused)", lineno)
        elif isinstance(node, nodes.Call):
            yield ("提示语里不允许调用函数 ( )（安全沙箱）；只能写 {{ 列名 }} 和简单过滤器 "
                   "(sandbox: calls are not allowed)", lineno)
        elif isinstance(node, nodes.Filter):
            if node.name not in ALLOWED_FILTERS:
                yield (f"过滤器 |{node.name} 不允许（安全沙箱）；可用 {', '.join(sorted(ALLOWED_FILTERS))} "
                       f"(sandbox: filter refused)", lineno)
        elif type(node) not in _ALLOWED_NODES:
            kind = type(node).__name__
            word = _STATEMENT_WORDS.get(kind, kind.lower())
            yield (f"提示语里不允许 {{% {word} %}}（安全沙箱）；只能写 {{{{ 列名 }}}}、{{% if %}} 和简单过滤器 "
                   f"(sandbox: {kind} refused)", lineno)


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


# --- finding templates --------------------------------------------------------------------------

def builtin_names() -> list[str]:
    """Names of the built-in templates shipped with callbot."""
    folder = resources.files("callbot") / _TEMPLATE_DIR
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_text(name: str) -> str:
    """The YAML of a built-in template."""
    return (resources.files("callbot") / _TEMPLATE_DIR / f"{name}.yaml").read_text(encoding="utf-8")


def load_script(source: str | os.PathLike[str], *,
                columns: Iterable[str] | None = None) -> Script:
    """A built-in template by name, or a template file by path; validated (TemplateError)."""
    text_source = os.fspath(source)
    if isinstance(source, str) and text_source in builtin_names():
        return parse_script(builtin_text(text_source), filename=f"{text_source}.yaml (内置)",
                            columns=columns)
    path = Path(source)
    if not path.is_file():
        raise TemplateError(
            f"找不到模板 {text_source!r}：既不是内置模板（{', '.join(builtin_names())}）也不是文件 "
            f"(no such template)", errors=[])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _fail(str(path), [TemplateIssue(str(path), 1, "模板文件必须是 UTF-8 编码 "
                                                            "(the file must be UTF-8)")]) from None
    return parse_script(text, filename=str(path), columns=columns, base_dir=path.resolve().parent)


MASK_FIELDS = frozenset({"need_masks", "masks"})
"""Result fields that make a campaign a mask reservation (its reports tabulate masks)."""
WELFARE_FIELD = "welfare"
"""The result field that makes a campaign a welfare check (follow-up list, unreached alerts)."""

_kinds_cache: dict[tuple[str, float], frozenset[str]] = {}


def tabulations(source: str | os.PathLike[str], answered: Iterable[str] = ()) -> frozenset[str]:
    """Which tabulations fit a campaign: ``mask`` and/or ``welfare``, from the fields its
    template declares (cached per file version) and any *answered* fields (a template that no
    longer loads still tabulates what was recorded). The one rule the reports, the results page
    and the alerts use."""
    key = os.fspath(source)
    try:
        mtime = os.stat(key).st_mtime
    except OSError:
        mtime = 0.0
    if (key, mtime) not in _kinds_cache:
        _kinds_cache[(key, mtime)] = frozenset(field_labels(source))
    fields = _kinds_cache[(key, mtime)] | set(answered)
    return frozenset(({"mask"} if MASK_FIELDS & fields else set())
                     | ({"welfare"} if WELFARE_FIELD in fields else set()))


def field_labels(source: str | os.PathLike[str]) -> dict[str, str]:
    """What staff read for each result field of a template: its ``label``, else its name. A
    template that no longer loads (moved or broken since the campaign started) gives ``{}``."""
    try:
        script = load_script(source)
    except TemplateError:
        return {}
    return {name: spec.label or name for name, spec in script.fields.items()}
