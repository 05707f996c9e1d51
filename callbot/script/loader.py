"""Reading a template: YAML with the line of every value (so an error names its line), size
and nesting limits, and the error model (``TemplateIssue``; ``TemplateError`` lists them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from callbot import defaults
from callbot.exceptions import TemplateError

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
