"""Where the web app finds scripts: the built-ins shipped with callbot and the YAML templates
staff uploaded (files under ``<data dir>/scripts``; a campaign names an uploaded one by path).

Staff recordings of an uploaded script live in ``<data dir>/scripts/<slug>/``, next to the
template file, so the template names them relatively as ``audio: <slug>/问候.wav`` and the engine
resolves that the same way on a call as the web does here."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app

BUILTIN_TITLES = {"mask_reservation": "口罩预约登记", "welfare_check": "独居老人关爱回访"}
_SLUG_RE = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff]{1,64}$")
RECORDING_SUFFIXES = (".wav", ".mp3")
_REC_STEM_RE = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fff（）()]{1,60}$")
_REC_DROP_RE = re.compile(r"[^A-Za-z0-9_\-\u4e00-\u9fff（）()]")
_MISSING_HINT = "请先在话术页面的“录音”部分上传这个录音文件，再保存话术。"


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
    """The folder of staff-written templates (created when missing)."""
    d = Path(current_app.config["SCRIPTS_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    return d


def builtin_dir() -> Path:
    """The folder of the built-in templates."""
    import callbot

    return Path(callbot.__file__).parent / "templates"


def valid_slug(slug: str) -> bool:
    """Whether *slug* may name a template file."""
    return bool(_SLUG_RE.match(slug))


def _meta(text: str) -> tuple[str, str]:
    """(title, description) read leniently from a template's YAML (with the template limits:
    a file that would expand without bound reads as untitled)."""
    from callbot.exceptions import TemplateError
    from callbot.script import safe_yaml

    try:
        data = safe_yaml(text)
    except TemplateError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("title") or data.get("name") or ""), str(data.get("description") or "")


def all_scripts() -> list[ScriptInfo]:
    """Every template staff can pick: built-ins first, then their own."""
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
    """The template called *slug*, or None."""
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


def script_choices(scripts: list[ScriptInfo]) -> list[tuple[str, str]]:
    """Options for a form: the slug as the value (never a path on the server), the title shown."""
    return [(s.slug, f"{s.title}{'（内置）' if s.builtin else ''}") for s in scripts]


def script_title(ref: str) -> str:
    """The title staff read for a campaign's template reference."""
    if ref in BUILTIN_TITLES:
        return BUILTIN_TITLES[ref]
    for s in all_scripts():
        if s.ref == ref:
            return s.title
    return Path(ref).stem if "/" in ref else ref


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


def validate(text: str, filename: str = "script.yaml",
             base_dir: Path | None = None) -> tuple[Any, list[Problem]]:
    """Validate YAML template text with the script module; ``(template, problems)``.
    Relative ``audio:`` paths resolve in *base_dir* (default: where uploaded templates live)."""
    from callbot import script as script_mod
    from callbot.exceptions import TemplateError

    try:
        tpl = script_mod.parse_script(text, filename=filename,
                                      base_dir=base_dir if base_dir is not None else scripts_dir())
    except TemplateError as exc:
        problems = [_problem(e) for e in exc.errors] or [_problem(exc)]
        for p in problems:
            if "录音文件" in p.message and "不存在" in p.message:
                p.message = f"{p.message}。{_MISSING_HINT}"
        return None, problems
    return tpl, []


def validate_info(info: ScriptInfo) -> tuple[Any, list[Problem]]:
    """Validate a stored script (a built-in resolves its paths in the package)."""
    return validate(source(info), f"{info.slug}.yaml",
                    base_dir=builtin_dir() if info.builtin else scripts_dir())


# --- staff recordings --------------------------------------------------------------------------

@dataclass
class Recording:
    """One stored recording of an uploaded script."""

    name: str
    """The file name, e.g. ``问候.wav``."""
    path: Path
    size: int
    ref: str
    """What the template writes after ``audio:`` (relative to the template's folder)."""
    used_by: list[str]
    """Names of the steps that play it."""


def recordings_dir(slug: str) -> Path:
    """Where *slug*'s recordings are stored (next to its template; created on first upload)."""
    if not valid_slug(slug):
        raise ValueError(f"bad script name {slug!r}")
    return scripts_dir() / slug


def recording_name(filename: str) -> str | None:
    """A safe file name for an upload (Chinese kept; no folders, no dots but the suffix), or None
    when nothing usable is left. Unlike werkzeug's secure_filename this keeps 问候.wav."""
    name = unicodedata.normalize("NFC", filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.strip().rpartition(".")
    if not dot or f".{suffix.lower()}" not in RECORDING_SUFFIXES:
        return None
    stem = _REC_DROP_RE.sub("", re.sub(r"\s+", "_", stem.strip()))[:60]
    if not stem or not _REC_STEM_RE.match(stem):
        return None
    return f"{stem}.{suffix.lower()}"


def recording_path(slug: str, name: str) -> Path | None:
    """The stored file *name* of *slug*, or None (also for any name that is not a plain safe
    file name, so ``../x.wav`` never leaves the folder)."""
    if recording_name(name) != name:
        return None
    path = recordings_dir(slug) / name
    return path if path.is_file() else None


def steps_using(tpl: Any, path: Path) -> list[str]:
    """Names of the steps of *tpl* whose ``audio:`` is *path*."""
    target = path.resolve()
    return [name for name, step in (tpl.steps.items() if tpl else [])
            if step.audio is not None and Path(step.audio).resolve() == target]


def list_recordings(info: ScriptInfo, tpl: Any = None) -> list[Recording]:
    """The recordings stored for an uploaded script, with the steps that use each."""
    if info.builtin:
        return []
    d = recordings_dir(info.slug)
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir()):
        if p.is_file() and recording_name(p.name) == p.name:
            out.append(Recording(p.name, p, p.stat().st_size, f"{info.slug}/{p.name}",
                                 steps_using(tpl, p)))
    return out
