"""Personas of the resident simulator: who answers a number and how (YAML or CSV table)."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callbot.exceptions import ConfigError

BEHAVIOURS = ("answer", "silent", "busy", "no_answer", "reject", "hangup_mid_prompt",
              "early_media_fail", "answered_announcement")
"""What a persona can do (see the module docstring and docs/telephony.md)."""

_FIELDS = ("number", "name", "behaviour", "ring_s", "replies", "code", "announcement",
           "hangup_after_s", "after_replies", "barge_in_after_s", "greeting")
_REPLY_FIELDS = ("reply", "barge_in_after_s")
"""Keys of a reply written as a mapping (YAML): ``{reply: xuyao.wav, barge_in_after_s: 0.8}``."""


@dataclass(frozen=True)
class Persona:
    """One simulated resident."""

    number: str
    """Dialled number (user part of the To URI); ``*`` is the default for unlisted numbers."""
    behaviour: str = "answer"
    name: str = ""
    ring_s: float = 0.0
    """Seconds of ringing (180) before answering."""
    replies: tuple[str, ...] = ()
    """One per prompt heard, in order: a WAV path, ``say:文本`` (espeak-ng), ``dtmf:12#`` or
    ``silence``."""
    code: int | None = None
    """Final status for ``reject`` (default 603) and ``early_media_fail`` (default 480)."""
    announcement: str | None = None
    """WAV or ``say:文本`` played as early media (183) by ``early_media_fail``, or after answering
    by ``answered_announcement`` (a network that answers before its announcement, or a voice
    assistant / 来电秘书 picking up for the resident)."""
    hangup_after_s: float = 1.0
    """``hangup_mid_prompt``: hang up this long after the first prompt starts;
    ``answered_announcement``: this long after the announcement ended."""
    after_replies: str = "wait"
    """``wait`` for the robot to hang up, or ``hangup`` once the last reply was given."""
    greeting: str | None = None
    """``answer``: say this (WAV or ``say:文本``) as soon as the call is answered, before any
    prompt is heard — a person picking up a phone (the duty phone of a 转人工 test)."""
    reply_barge_in_s: tuple[float | None, ...] = ()
    """Per reply (same order as ``replies``): start it this many seconds after the prompt it
    answers starts, talking over the prompt; None (or missing) = reply after the prompt ended."""

    def barge_in_after(self, i: int) -> float | None:
        """When reply *i* talks over its prompt (seconds into the prompt), or None."""
        return self.reply_barge_in_s[i] if i < len(self.reply_barge_in_s) else None


class PersonaTable:
    """Personas by number, loaded from YAML or CSV; relative WAV paths are relative to the file."""

    def __init__(self, personas: list[Persona], path: str = "<memory>"):
        self.path = path
        self.by_number = {p.number: p for p in personas}

    def lookup(self, number: str) -> Persona:
        p = self.by_number.get(number) or self.by_number.get("*")
        return p or Persona(number=number, behaviour="silent")

    def __len__(self) -> int:
        return len(self.by_number)


def _err(path: str, where: str, msg: str) -> ConfigError:
    return ConfigError(msg, path=path, key=where)


def _media_ref(path: str, base: Path, where: str, value: str, allow_dtmf: bool) -> str:
    v = value.strip()
    if v in ("silence", "-", ""):
        return "silence"
    if v.startswith("say:"):
        if not v[4:].strip():
            raise _err(path, where, "say: needs some text, e.g. say:好的")
        return v
    if v.startswith("dtmf:"):
        if not allow_dtmf:
            raise _err(path, where, "an announcement cannot be DTMF")
        if not re.fullmatch(r"[0-9*#A-Da-d]+", v[5:]):
            raise _err(path, where, f"not DTMF digits: {v[5:]!r}")
        return v
    p = Path(v)
    if not p.is_absolute():
        p = base / p
    if not p.is_file():
        raise _err(path, where, f"WAV file not found: {p}")
    return str(p)


def _barge_s(path: str, where: str, v: Any) -> float | None:
    if v in (None, ""):
        return None
    if isinstance(v, bool):
        v = "yes" if v else "no"  # YAML's yes/no: not seconds
    try:
        s = float(v)
    except (TypeError, ValueError):
        raise _err(path, where, f"expected seconds into the prompt (e.g. 0.8), got {v!r}") \
            from None
    if not 0 <= s <= 600:
        raise _err(path, where, f"must be 0-600 seconds into the prompt, got {v}")
    return s


def _persona(raw: dict[str, Any], path: str, where: str, base: Path) -> Persona:  # noqa: C901
    unknown = set(raw) - set(_FIELDS)
    if unknown:
        raise _err(path, where, f"unknown field(s) {', '.join(sorted(unknown))}; fields are "
                   f"{', '.join(_FIELDS)}")
    number = str(raw.get("number") or "").strip()
    if not number:
        raise _err(path, where, "number is required ('*' for the default persona)")
    behaviour = str(raw.get("behaviour") or "answer").strip()
    if behaviour not in BEHAVIOURS:
        raise _err(path, f"{where} behaviour", f"unknown behaviour {behaviour!r}; one of "
                   f"{', '.join(BEHAVIOURS)}")
    kw: dict[str, Any] = {"number": number, "behaviour": behaviour,
                          "name": str(raw.get("name") or "")}
    who = f"{where} (number {number})"  # barge-in errors name the persona
    for key in ("ring_s", "hangup_after_s"):
        v = raw.get(key)
        if v not in (None, ""):
            try:
                kw[key] = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise _err(path, f"{where} {key}", f"expected seconds, got {v!r}") from None
            if kw[key] < 0:
                raise _err(path, f"{where} {key}", "must not be negative")
    v = raw.get("code")
    if v not in (None, ""):
        try:
            kw["code"] = int(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _err(path, f"{where} code", f"expected a SIP status, got {v!r}") from None
        if not 400 <= kw["code"] <= 699:
            raise _err(path, f"{where} code", f"must be a 4xx-6xx status, got {v}")
    replies = raw.get("replies")
    if isinstance(replies, str):
        replies = [r for r in replies.split("|")]
    if replies is None:
        replies = []
    if not isinstance(replies, list):
        raise _err(path, f"{where} replies", "expected a list (CSV: separated by |)")
    default_barge = _barge_s(path, f"{who} barge_in_after_s", raw.get("barge_in_after_s"))
    refs: list[str] = []
    barge: list[float | None] = []
    for i, r in enumerate(replies, 1):
        rwhere = f"{where} replies[{i}]"
        if isinstance(r, dict):
            bad = set(r) - set(_REPLY_FIELDS)
            if bad or "reply" not in r:
                what = f"unknown key(s) {', '.join(sorted(map(str, bad)))}" if bad else \
                    "no 'reply'"
                raise _err(path, f"{who} replies[{i}]", f"{what}; a reply written as a mapping "
                           "is {reply: WAV|say:…|dtmf:…|silence, barge_in_after_s: seconds}")
            b = _barge_s(path, f"{who} replies[{i}] barge_in_after_s",
                         r.get("barge_in_after_s"))
            r = r["reply"]
        else:
            b = None
        if b is None:
            b = default_barge
        refs.append(_media_ref(path, base, rwhere, str(r), True))
        barge.append(b)
    kw["replies"] = tuple(refs)
    if default_barge is not None and not refs:
        raise _err(path, f"{who} barge_in_after_s", "there are no replies to talk over the "
                   "prompt with (add replies)")
    if any(b is not None for b in barge):
        if behaviour != "answer":
            raise _err(path, f"{who} barge_in_after_s", "only an 'answer' persona replies, so "
                       f"only it can talk over a prompt (behaviour is {behaviour})")
        kw["reply_barge_in_s"] = tuple(barge)
    if raw.get("greeting"):
        if behaviour != "answer":
            raise _err(path, f"{who} greeting", "only an 'answer' persona speaks when it picks up")
        kw["greeting"] = _media_ref(path, base, f"{where} greeting", str(raw["greeting"]), False)
    if raw.get("announcement"):
        kw["announcement"] = _media_ref(path, base, f"{where} announcement",
                                        str(raw["announcement"]), False)
    elif behaviour in ("early_media_fail", "answered_announcement"):
        raise _err(path, f"{where} announcement", f"{behaviour} needs an announcement")
    after = str(raw.get("after_replies") or "wait")
    if after not in ("wait", "hangup"):
        raise _err(path, f"{where} after_replies", "must be wait or hangup")
    kw["after_replies"] = after
    return Persona(**kw)


def load_personas(path: str | os.PathLike[str]) -> PersonaTable:
    """Read a persona table (.yaml/.yml or .csv); errors name the file, the row and the field."""
    p = Path(path)
    sp = str(p)
    if not p.is_file():
        raise ConfigError("persona table not found", path=sp)
    base = p.parent
    rows: list[tuple[str, dict[str, Any]]] = []
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", path=sp) from None
        if isinstance(doc, dict):
            items = doc.get("residents")
            if items is None:
                raise ConfigError("expected a top-level 'residents:' list", path=sp)
            if doc.get("default"):
                rows.append(("default", {"number": "*", **doc["default"]}))
        else:
            items = doc
        if not isinstance(items, list):
            raise ConfigError("'residents' must be a list of personas", path=sp)
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise _err(sp, f"residents[{i}]", "each persona is a mapping (number: ...)")
            rows.append((f"residents[{i}]", item))
    elif p.suffix.lower() == ".csv":
        with p.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "number" not in reader.fieldnames:
                raise ConfigError(f"CSV needs a header row with at least 'number'; columns: "
                                  f"{', '.join(_FIELDS)}", path=sp)
            for i, row in enumerate(reader, 2):
                rows.append((f"row {i}", {k: v for k, v in row.items() if k and v not in
                                          (None, "")}))
    else:
        raise ConfigError("persona table must be .yaml, .yml or .csv", path=sp)
    personas = [_persona(raw, sp, where, base) for where, raw in rows]
    seen: set[str] = set()
    for per in personas:
        if per.number in seen:
            raise ConfigError(f"number {per.number} appears twice", path=sp)
        seen.add(per.number)
    return PersonaTable(personas, sp)
