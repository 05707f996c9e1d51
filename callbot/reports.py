"""Reports: connection rates (both definitions), outcomes, per-contact results and answers, mask
and welfare tabulations, and CSV/XLSX exports safe against formula injection.

Service API: :func:`summary`, :func:`contact_rows`, :func:`masks_table`, :func:`welfare_table`,
:func:`full_report`, :func:`export_csv`, :func:`export_xlsx`. All take a session and a campaign
(id, name or row) and return plain dicts/lists; aggregates run in SQL.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from callbot import labels
from callbot.alerts import latest_by_contact
from callbot.campaign.models import DIALLED_OVER, Answer, Attempt, Campaign, Contact, Target
from callbot.campaign.service import get_campaign
from callbot.script import field_labels, tabulations

FOLLOW_UP_ORDER = {"emergency": 0, "needs_help": 1, "human": 2, "callback": 3, "unreachable": 4}
"""Order of the welfare follow-up list: urgent ones first (an emergency heard: ``urgent`` true),
then needs help, residents who asked for a person, those who asked to be called back and were
not reached again, then the unreachable (labels: ``labels.FOLLOW_UP_REASONS``)."""
URGENT_FIELD = "urgent"
"""The answer field an emergency sets (the welfare built-in's ``urgent``): results, the
follow-up list and exports show it first."""


def _campaign(session: Session, ref: int | str | Campaign) -> Campaign:
    return ref if isinstance(ref, Campaign) else get_campaign(session, ref)


def _rate(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def summary(session: Session, ref: int | str | Campaign) -> dict[str, Any]:
    """The campaign's headline figures (the ``callbot report --json`` object)."""
    c = _campaign(session, ref)
    cid = c.id
    targets = dict(session.execute(select(Target.state, func.count()).where(
        Target.campaign_id == cid).group_by(Target.state)).all())
    results = dict(session.execute(select(Target.result, func.count()).where(
        Target.campaign_id == cid, Target.state == "done").group_by(Target.result)).all())
    contacts = sum(targets.values())
    dialled = (Attempt.campaign_id == cid) & Attempt.state.in_(DIALLED_OVER)
    bucket = _hour_bucket(session)
    # one pass over the attempts; everything below is derived from a few hundred groups
    groups = session.execute(
        select(Attempt.number, Attempt.outcome, Attempt.completed, bucket, func.count(),
               func.sum(Attempt.talk_seconds), func.count(Attempt.talk_seconds))
        .where(dialled).group_by(Attempt.number, Attempt.outcome, Attempt.completed, bucket)
    ).all()
    outcomes: dict[str, int] = defaultdict(int)
    by_attempt: dict[int, dict[str, int]] = {}
    hours: dict[str, dict[str, int]] = defaultdict(lambda: {"attempts": 0, "answered": 0})
    zone = ZoneInfo(c.timezone)
    talk_sum, talk_n = 0.0, 0
    for number, outcome, completed, b, n, tsum, tn in groups:
        n = int(n)
        outcomes[str(outcome)] += n
        ans = n if outcome == "answered" else 0
        d = by_attempt.setdefault(int(number or 0), {"attempts": 0, "answered": 0,
                                                     "completed": 0})
        d["attempts"] += n
        d["answered"] += ans
        d["completed"] += n if completed else 0
        if b is not None:
            utc = (b if isinstance(b, datetime) else datetime.strptime(b, "%Y-%m-%d %H")
                   ).replace(tzinfo=UTC)
            h = hours[f"{utc.astimezone(zone).hour:02d}"]
            h["attempts"] += n
            h["answered"] += ans
        if outcome == "answered" and tn:
            talk_sum += float(tsum or 0)
            talk_n += int(tn)
    attempts = sum(outcomes.values())
    answered = outcomes.get("answered", 0)
    # contacts reached, and those who asked to be called back (现在没空) on some attempt whatever
    # became of them (only an answered call can ask): one pass over the answered attempts
    # … and the transfers to the duty phone (转人工: tried, answered, their talk time)
    reached, callback_contacts, transfers, transfers_answered, transfer_talk = session.execute(
        select(func.count(func.distinct(Attempt.target_id)),
               func.count(func.distinct(case((Attempt.ended == "callback", Attempt.target_id)))),
               func.count(Attempt.transfer_to),
               func.count(case((Attempt.transfer_answered.is_(True), 1))),
               func.sum(Attempt.transfer_talk_s))
        .where(dialled, Attempt.outcome == "answered")).one()
    reached, callback_contacts = int(reached or 0), int(callback_contacts or 0)
    completed_contacts = int(results.get("completed", 0))
    return {
        "campaign": c.name,
        "campaign_id": c.id,
        "state": c.state,
        "script": c.script,
        "contacts": contacts,
        "attempts": attempts,
        "answered_attempts": answered,
        "reached_contacts": reached,
        "connection_rate_attempts": _rate(answered, attempts),
        "connection_rate_contacts": _rate(reached, contacts),
        "completed_contacts": completed_contacts,
        "completion_rate": _rate(completed_contacts, contacts),
        "callback_contacts": callback_contacts,
        "outcomes": dict(sorted(outcomes.items())),
        "results": {str(k): int(v) for k, v in results.items()},
        "pending_contacts": int(targets.get("pending", 0)) + int(targets.get("active", 0)),
        "done_contacts": int(targets.get("done", 0)),
        "by_hour": dict(sorted(hours.items())),
        "by_attempt": dict(sorted(by_attempt.items())),
        "mean_talk_s": round(talk_sum / talk_n, 2) if talk_n else 0.0,
        "total_talk_s": round(talk_sum, 1),
        "transfers": int(transfers or 0),
        "transfers_answered": int(transfers_answered or 0),
        "transfer_talk_s": round(float(transfer_talk or 0), 1),
    }


def _hour_bucket(session: Session) -> Any:
    """SQL expression: the UTC hour of ``started_at``: 'YYYY-MM-DD HH' on SQLite, a timestamp
    truncated to the hour on PostgreSQL (``date_trunc`` lets the planner hash-aggregate; with
    ``to_char`` it sorted 100k rows on disk, 3x slower)."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLAlchemy stores SQLite datetimes as "YYYY-MM-DD HH:MM:SS[.ffffff]": the first 13
        # characters are the hour, without parsing each row as strftime does
        return func.substr(Attempt.started_at, 1, 13)
    return func.date_trunc("hour", Attempt.started_at)


def final_answers(session: Session, campaign_id: int) -> dict[int, dict[str, Any]]:
    """contact id → {field: value}: the latest value heard for each field."""
    out: dict[int, dict[str, Any]] = defaultdict(dict)
    for contact_id, fld, value in session.execute(
            select(Answer.contact_id, Answer.field, Answer.value)
            .where(Answer.campaign_id == campaign_id).order_by(Answer.id)):
        out[contact_id][fld] = value
    for answers in out.values():  # urgent first, wherever answers are shown
        if URGENT_FIELD in answers:
            answers_items = [(URGENT_FIELD, answers.pop(URGENT_FIELD)), *answers.items()]
            answers.clear()
            answers.update(answers_items)
    return out


def voice_of(session: Session, campaign_id: int) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """contact id → ``replies`` (the reply recordings the contact's answers came from, in order:
    居民原话 is their transcript plus their audio) and ``calls`` (whole-call recordings); each
    ``{"id", "text", "duration_s"}``."""
    from callbot.recordings import Recording

    out: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: {"replies": [], "calls": []})
    linked = select(Answer.recording_id).where(Answer.campaign_id == campaign_id,
                                               Answer.recording_id.is_not(None))
    for r in session.scalars(select(Recording).where(
            Recording.campaign_id == campaign_id,
            (Recording.kind == "call") | Recording.id.in_(linked)).order_by(Recording.id)):
        out[r.contact_id]["calls" if r.kind == "call" else "replies"].append(
            {"id": r.id, "text": r.text, "duration_s": r.duration_s})
    return out


def contact_rows(session: Session, ref: int | str | Campaign) -> list[dict[str, Any]]:
    """One dict per contact: row, name, phone, dial, address, note, variables, state, result,
    attempts, last_outcome, announcement (what the line said on the last call: a carrier
    announcement or a voice assistant, else None), answers, recordings (``voice_of``)."""
    c = _campaign(session, ref)
    answers = final_answers(session, c.id)
    voices = voice_of(session, c.id)
    said: dict[int, str | None] = {}  # the last dialled attempt's announcement, per contact
    for cid_, text in session.execute(
            select(Attempt.contact_id, Attempt.announcement)
            .where(Attempt.campaign_id == c.id, Attempt.outcome.is_not(None))
            .order_by(Attempt.id)).all():
        said[cid_] = text
    rows = []
    for t, ct in session.execute(
            select(Target, Contact).join(Contact, Contact.id == Target.contact_id)
            .where(Target.campaign_id == c.id).order_by(Contact.row)).all():
        rows.append({
            "contact_id": ct.id, "row": ct.row, "name": ct.name, "phone": ct.phone,
            "dial": ct.dial, "extension": ct.extension, "address": ct.address,
            "note": ct.note, "variables": dict(ct.variables or {}), "state": t.state,
            "result": t.result, "attempts": t.attempts, "last_outcome": t.last_outcome,
            "announcement": said.get(ct.id), "answers": answers.get(ct.id, {}),
            "recordings": voices.get(ct.id, {"replies": [], "calls": []}),
        })
    return rows


_BUILDING_RE = re.compile(r"^(.*?(?:号楼|栋|幢|座|楼|单元))")


def building_of(address: str) -> str:
    """'3号楼 201室' → '3号楼'; an address without a building part stays whole."""
    a = (address or "").strip()
    m = _BUILDING_RE.match(a)
    return m.group(1) if m else (a or "（无地址）")


def _as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() in ("true", "yes", "1", "是"))


def masks_table(session: Session, ref: int | str | Campaign,
                rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Mask reservations: total, per building, and the distribution list."""
    c = _campaign(session, ref)
    rows = rows if rows is not None else contact_rows(session, c)
    per_building: dict[str, dict[str, int]] = defaultdict(lambda: {"households": 0, "masks": 0})
    distribution = []
    declined = 0
    for r in rows:
        a = r["answers"]
        if "need_masks" not in a and "masks" not in a:
            continue
        n = _as_int(a.get("masks")) if _truthy(a.get("need_masks", True)) else 0
        if n <= 0:
            declined += 1
            continue
        b = building_of(r["address"])
        per_building[b]["households"] += 1
        per_building[b]["masks"] += n
        distribution.append({"row": r["row"], "name": r["name"], "phone": r["dial"],
                             "address": r["address"], "building": b, "masks": n})
    distribution.sort(key=lambda d: (d["building"], d["address"], d["row"]))
    return {
        "total_masks": sum(d["masks"] for d in distribution),
        "households": len(distribution),
        "declined": declined,
        "per_building": dict(sorted(per_building.items())),
        "distribution": distribution,
    }


def welfare_table(session: Session, ref: int | str | Campaign,
                  rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Welfare check: ok / needs help (urgent ones counted apart) / asked for a person / asked
    for a call back that never happened / unreachable after all attempts, and the follow-up list
    in that order, urgent first (see :data:`FOLLOW_UP_ORDER`)."""
    c = _campaign(session, ref)
    rows = rows if rows is not None else contact_rows(session, c)
    counts = {"ok": 0, "needs_help": 0, "urgent": 0, "human": 0, "callback": 0, "unreachable": 0,
              "other": 0, "pending": 0}
    items = latest_by_contact(session, c.id)
    follow_up = []
    for r in rows:
        w = r["answers"].get("welfare")
        urgent = _truthy(r["answers"].get(URGENT_FIELD))
        if w == "ok" and not urgent:
            counts["ok"] += 1
            continue
        if w == "needs_help" or urgent or r["result"] == "emergency":
            counts["needs_help"] += 1
            counts["urgent"] += int(urgent or r["result"] == "emergency")
            reason = "emergency" if urgent or r["result"] == "emergency" else "needs_help"
        elif r["result"] == "human":
            counts["human"] += 1
            reason = "human"
        elif r["state"] != "done":
            counts["pending"] += 1
            continue
        elif r["result"] == "callback":
            counts["callback"] += 1
            reason = "callback"
        elif r["result"] in ("unreachable", "invalid_number", "suspended", "incomplete"):
            counts["unreachable"] += 1
            reason = "unreachable"
        else:
            counts["other"] += 1
            continue
        item = {"row": r["row"], "name": r["name"], "phone": r["dial"],
                "address": r["address"], "reason": reason, "urgent": reason == "emergency",
                "note": str(r["answers"].get("note") or ""),
                "contact_id": r["contact_id"],
                "recordings": r["recordings"]["replies"],
                "last_outcome": r["last_outcome"], "attempts": r["attempts"]}
        item.update(_follow_up_state(items.get(r["contact_id"])))
        follow_up.append(item)
    follow_up.sort(key=lambda d: (FOLLOW_UP_ORDER[d["reason"]], d["row"]))
    return {"counts": counts, "follow_up": follow_up}


def _follow_up_state(a: Any) -> dict[str, Any]:
    """The follow-up item's state for a list row: ``alert_id``, ``followup`` (open, claimed,
    contacted, visited, resolved; None without an alert), ``handled_by``, ``followup_note``."""
    if a is None:
        return {"alert_id": None, "followup": None, "handled_by": None, "followup_note": ""}
    return {"alert_id": a.id, "followup": a.state, "handled_by": a.handled_by or a.claimed_by,
            "followup_note": a.note or ""}


def full_report(session: Session, ref: int | str | Campaign) -> dict[str, Any]:
    """Summary plus the tabulations that apply to the campaign's answers."""
    c = _campaign(session, ref)
    out = summary(session, c)
    rows = contact_rows(session, c)
    kinds = tabulations(c.script, {k for r in rows for k in r["answers"]})
    if "mask" in kinds:
        out["masks"] = masks_table(session, c, rows)
    if "welfare" in kinds:
        out["welfare"] = welfare_table(session, c, rows)
    return out


# --- exports ------------------------------------------------------------------------------

_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(v: Any) -> Any:
    """Text a spreadsheet would run as a formula gets a leading apostrophe; numbers stay."""
    if isinstance(v, bool):
        return "是" if v else "否"
    if v is None:
        return ""
    if isinstance(v, int | float):
        return v
    s = str(v)
    return "'" + s if s.startswith(_DANGEROUS) else s


AudioLink = Callable[[int], str]


def recording_ref(rec_id: int) -> str:
    """How an export names a recording when no web address is given (``callbot recordings get``)."""
    return f"recording:{rec_id}"


def _links(recs: list[dict[str, Any]], link: AudioLink) -> str:
    return " ".join(link(int(r["id"])) for r in recs)


def export_table(session: Session, ref: int | str | Campaign, *,
                 audio_link: AudioLink = recording_ref) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the per-contact export (already formula-safe). 回答录音 / 整通录音 name
    the recordings (*audio_link*: the web's address of each, else ``recording:ID``)."""
    c = _campaign(session, ref)
    rows = contact_rows(session, c)
    var_names: list[str] = list(c.list.variables or [])
    names = field_labels(c.script)
    answer_fields: list[str] = []
    for r in rows:
        for k in r["answers"]:
            if k not in answer_fields:
                answer_fields.append(k)
    if URGENT_FIELD in answer_fields:  # an emergency is the first thing a grid worker reads
        answer_fields.remove(URGENT_FIELD)
        answer_fields.insert(0, URGENT_FIELD)
    calls = bool(c.record_calls) or any(r["recordings"]["calls"] for r in rows)
    items = latest_by_contact(session, c.id)  # follow-up columns once anything alerted
    said = any(r["announcement"] for r in rows)  # 线路提示音 once a line said something
    header = ["行号", "姓名", "电话", "分机", "地址", "备注", *var_names, "状态", "结果", "尝试次数",
              "最后一次", *(["线路提示音"] if said else []),
              *[names.get(f, f) for f in answer_fields], "回答录音",
              *(["整通录音"] if calls else []),
              *(["待处理事项", "跟进状态", "处理人", "处理情况"] if items else [])]
    out = []
    for r in rows:
        line = [r["row"], r["name"], r["dial"], r["extension"], r["address"], r["note"],
                *[r["variables"].get(v, "") for v in var_names],
                labels.target_state(r["state"]), labels.result(r["result"]), r["attempts"],
                labels.outcome(r["last_outcome"]) if r["last_outcome"] else "",
                *([r["announcement"] or ""] if said else []),
                *[_answer_cell(r["answers"].get(f, "")) for f in answer_fields],
                _links(r["recordings"]["replies"], audio_link),
                *([_links(r["recordings"]["calls"], audio_link)] if calls else [])]
        if items:
            a = items.get(r["contact_id"])
            line += ["", "", "", ""] if a is None else [
                ("紧急·" if a.urgent else "") + labels.follow_up_reason(a.reason),
                labels.follow_up_state(a.state), a.handled_by or a.claimed_by or "",
                a.note or ""]
        out.append([safe_cell(v) for v in line])
    return [str(safe_cell(h)) for h in header], out


def _answer_cell(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, str) and value in labels.ANSWERS):
        return labels.answer(value)
    return value


def export_csv(session: Session, ref: int | str | Campaign, *,
               audio_link: AudioLink = recording_ref) -> bytes:
    """The per-contact table as UTF-8 CSV with BOM (opens correctly in Excel)."""
    header, rows = export_table(session, ref, audio_link=audio_link)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def export_xlsx(session: Session, ref: int | str | Campaign, *,
                audio_link: AudioLink = recording_ref) -> bytes:
    """An XLSX workbook: 明细 (per contact), 汇总 (summary), and 口罩 / 关怀 when they apply."""
    import openpyxl

    c = _campaign(session, ref)
    header, rows = export_table(session, c, audio_link=audio_link)
    rep = full_report(session, c)
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("明细")
    ws.append(header)
    for r in rows:
        ws.append(r)
    ws2 = wb.create_sheet("汇总")
    for k in ("campaign", "contacts", "attempts", "answered_attempts", "reached_contacts",
              "connection_rate_attempts", "connection_rate_contacts", "completion_rate",
              "mean_talk_s"):
        ws2.append([k, safe_cell(rep[k])])
    for k, v in rep["outcomes"].items():
        ws2.append([f"outcome:{k}", v])
    if "masks" in rep:
        ws3 = wb.create_sheet("口罩")
        ws3.append(["楼栋", "户数", "口罩数"])
        for b, d in rep["masks"]["per_building"].items():
            ws3.append([safe_cell(b), d["households"], d["masks"]])
        ws3.append(["合计", rep["masks"]["households"], rep["masks"]["total_masks"]])
        ws3.append([])
        ws3.append(["行号", "姓名", "电话", "地址", "口罩数"])
        for d in rep["masks"]["distribution"]:
            ws3.append([d["row"], safe_cell(d["name"]), safe_cell(d["phone"]),
                        safe_cell(d["address"]), d["masks"]])
    if "welfare" in rep:
        ws4 = wb.create_sheet("关怀")
        ws4.append(["行号", "姓名", "电话", "地址", "原因", "备注", "回答录音", "跟进状态", "处理人",
                    "处理情况"])
        for d in rep["welfare"]["follow_up"]:
            ws4.append([d["row"], safe_cell(d["name"]), safe_cell(d["phone"]),
                        safe_cell(d["address"]), labels.follow_up_reason(d["reason"]),
                        safe_cell(d["note"]), safe_cell(_links(d["recordings"], audio_link)),
                        labels.follow_up_state(d["followup"]),
                        safe_cell(d["handled_by"] or ""), safe_cell(d["followup_note"])])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_file(session: Session, ref: int | str | Campaign, path: str | Path) -> Path:
    """Write the export to *path*; the suffix (.csv or .xlsx) picks the format."""
    p = Path(path)
    if p.suffix.lower() == ".xlsx":
        p.write_bytes(export_xlsx(session, ref))
    elif p.suffix.lower() == ".csv":
        p.write_bytes(export_csv(session, ref))
    else:
        from callbot.exceptions import CampaignError

        raise CampaignError(f"导出文件须以 .csv 或 .xlsx 结尾：{p.name} (export must be .csv or .xlsx)")
    return p
