"""Where the web app finds scripts: the built-ins shipped with callbot and the YAML templates
staff uploaded (files under ``<data dir>/scripts``; a campaign names an uploaded one by path)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

BUILTIN_TITLES = {"mask_reservation": "口罩预约登记", "welfare_check": "独居老人关爱回访"}
_SLUG_RE = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}$")


@dataclass
class ScriptInfo:
    """One script as the pages list it."""

    ref: str
    """What a campaign stores: the built-in name or the uploaded file's path."""
    slug: str
    title: str
    builtin: bool
    description: str = ""


def scripts_dir() -> Path:
    d = Path(current_app.config["SCRIPTS_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    return d


def builtin_dir() -> Path:
    import callbot

    return Path(callbot.__file__).parent / "templates"


def valid_slug(slug: str) -> bool:
    return bool(_SLUG_RE.match(slug))


def _meta(text: str) -> tuple[str, str]:
    """(title, description) read leniently from a template's YAML."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("title") or data.get("name") or ""), str(data.get("description") or "")


def all_scripts() -> list[ScriptInfo]:
    out: list[ScriptInfo] = []
    seen = set()
    bdir = builtin_dir()
    names = sorted({p.stem for p in bdir.glob("*.yaml")} | set(BUILTIN_TITLES))
    for name in names:
        path = bdir / f"{name}.yaml"
        title, desc = _meta(path.read_text("utf-8")) if path.is_file() else ("", "")
        out.append(ScriptInfo(ref=name, slug=name, builtin=True,
                              title=BUILTIN_TITLES.get(name) or title or name, description=desc))
        seen.add(name)
    for path in sorted(scripts_dir().glob("*.yaml")):
        title, desc = _meta(path.read_text("utf-8"))
        out.append(ScriptInfo(ref=str(path.resolve()), slug=path.stem, builtin=False,
                              title=title or path.stem, description=desc))
    return out


def find(slug: str) -> ScriptInfo | None:
    for s in all_scripts():
        if s.slug == slug:
            return s
    return None


def source(info: ScriptInfo) -> str:
    """The YAML text of a script (a built-in's from the package, else the uploaded file)."""
    if info.builtin:
        path = builtin_dir() / f"{info.slug}.yaml"
        if path.is_file():
            return path.read_text("utf-8")
        from callbot.script import builtin_text

        return builtin_text(info.slug)
    return Path(info.ref).read_text("utf-8")


def script_choices() -> list[tuple[str, str]]:
    return [(s.ref, f"{s.title}{'（内置）' if s.builtin else ''}") for s in all_scripts()]


def script_title(ref: str) -> str:
    if ref in BUILTIN_TITLES:
        return BUILTIN_TITLES[ref]
    for s in all_scripts():
        if s.ref == ref:
            return s.title
    return Path(ref).stem if "/" in ref else ref


def kind_of(ref: str) -> str:
    """``mask``, ``welfare`` or ``other``: which tabulation the results page shows."""
    if ref == "mask_reservation":
        return "mask"
    if ref == "welfare_check":
        return "welfare"
    return "other"


@dataclass
class Problem:
    """One validation error, at its line when known."""

    line: int | None
    message: str


def _problem(e: Any) -> Problem:
    if isinstance(e, dict):
        return Problem(e.get("line"), str(e.get("message") or e.get("msg") or e))
    line = getattr(e, "line", None)
    msg = getattr(e, "message", None) or str(e)
    return Problem(int(line) if isinstance(line, int) else None, str(msg))


def validate(text: str, filename: str = "script.yaml") -> tuple[Any, list[Problem]]:
    """Validate YAML template text with the script module; ``(template, problems)``."""
    from callbot import script as script_mod
    from callbot.exceptions import TemplateError

    try:
        tpl = script_mod.parse_script(text, filename=filename)
    except TemplateError as exc:
        problems = [_problem(e) for e in exc.errors] or [_problem(exc)]
        return None, problems
    return tpl, []
