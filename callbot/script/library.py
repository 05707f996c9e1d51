"""Finding templates: the built-ins shipped in ``callbot/templates`` by name, files by path;
what a campaign's template tabulates (:func:`tabulations`) and how its fields read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from callbot.exceptions import TemplateError
from callbot.script.loader import TemplateIssue, _fail
from callbot.script.model import Script
from callbot.script.validation import parse_script

_TEMPLATE_DIR = "templates"


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
