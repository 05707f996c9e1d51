"""Parsing and validation: a template's YAML becomes a ``Script`` or a ``TemplateError`` listing
every problem at its line (unknown keys, broken flow, unknown fields, prompts that cannot render)."""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from callbot import defaults
from callbot.exceptions import PromptLimitError, TemplateError
from callbot.intents import ALWAYS, DEFAULT_VALUES, parse_key_action
from callbot.script.loader import Path_, TemplateIssue, _fail, _Lines, _load_yaml
from callbot.script.model import (
    ANSWER_INTENTS,
    ASSISTANT_MAX_CHARS,
    ASSISTANT_PATH,
    END_REASONS,
    FIELD_TYPES,
    HANDLER_KINDS,
    FieldSpec,
    Handler,
    Script,
    Step,
    _check_variables,
)
from callbot.script.sandbox import _answer_fields, _env, _sandbox_problems

_STEP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^[\u4e00-\u9fff][\u4e00-\u9fffA-Za-z0-9_]*$")
_KEY_RE = re.compile(r"^[0-9*#]$")


# --- parsing and validation ---------------------------------------------------------------------

_TOP_KEYS = {"name", "title", "description", "voice", "rate", "requires", "fields", "start", "steps",
             "max_turns", "handlers", "end_silence", "assistant"}
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


def _parse_step(name: str, raw: Any, path: Path_, chk: _Checker) -> Step | None:  # noqa: C901
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


def parse_script(text: str, *, filename: str = "<template>",  # noqa: C901
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
    if "assistant" in data:
        script.assistant = _parse_assistant(data["assistant"], chk)
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


def _parse_assistant(raw: Any, chk: _Checker) -> str | None:
    """``assistant: 文字`` or ``assistant: {say: 文字}``: the message left on a voice assistant."""
    path: Path_ = ("assistant",)
    if isinstance(raw, dict):
        for key in raw:
            if key != "say":
                chk.error(path + (key,), f"assistant 里不认识的键 {key!r}；只能写 say "
                                         f"(unknown key in assistant: only say)")
        raw = raw.get("say")
        path = ASSISTANT_PATH
    if raw is None or raw is False:
        return None  # written off on purpose
    if not isinstance(raw, str) or not raw.strip():
        chk.error(path, "assistant 应是一段留言文字，如 assistant: {say: \"您好，这里是居委会，请回电。\"} "
                        "(assistant needs the message text)")
        return None
    if len(raw.strip()) > ASSISTANT_MAX_CHARS:
        chk.error(path, f"assistant 留言太长（{len(raw.strip())} 字，上限 {ASSISTANT_MAX_CHARS}）；"
                        f"语音助手只录短留言 (assistant message too long)")
        return None
    if _answer_fields(raw):
        chk.error(path, "assistant 留言时居民还没有回答，不能用 answers.* "
                        "(no answers exist when the message is left)")
        return None
    return raw.strip()


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


def _check_flow(script: Script, chk: _Checker) -> None:  # noqa: C901
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
