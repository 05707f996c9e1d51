"""The Jinja2 sandbox prompts render in: allowed filters and syntax, and time and size limits,
so a staff-written prompt cannot run away or reach outside its contact's columns."""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from callbot import defaults
from callbot.exceptions import PromptLimitError

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
    if deadline is not None and time.thread_time() > deadline:
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
    """The ``answers.X`` a prompt uses (a copy: the caller may change it)."""
    return set(_answer_fields_of(text))


@functools.lru_cache(maxsize=4096)
def _answer_fields_of(text: str) -> frozenset[str]:
    # parsed once per text: every call (and the dispatcher's prerender of every attempt) asks
    # this of each prompt of its script, ~40 Jinja parses a call before
    try:
        ast = _env().parse(text)
    except TemplateSyntaxError:
        return frozenset()
    out = set()
    for attr in ast.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "answers":
            out.add(attr.attr)
    for item in ast.find_all(nodes.Getitem):
        if isinstance(item.node, nodes.Name) and item.node.name == "answers" \
                and isinstance(item.arg, nodes.Const):
            out.add(str(item.arg.value))
    return frozenset(out)


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
