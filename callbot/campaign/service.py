"""Campaign actions for the CLI and the web: plain functions over a SQLAlchemy session and ids.

create → start → pause ⇄ resume → cancel; :func:`status` for a progress snapshot. State changes
only touch SQL; the dispatcher reads them on its next tick.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import DateTime, Integer, String, func, insert, literal, select, update
from sqlalchemy.orm import Session

from callbot import defaults
from callbot.campaign.models import (
    Attempt,
    Campaign,
    Contact,
    ContactList,
    DoNotCall,
    Target,
    utcnow,
)
from callbot.campaign.policy import RetryPolicy, Windows
from callbot.db import table_of
from callbot.exceptions import CampaignError


@dataclass
class CampaignStatus:
    """A snapshot of one campaign's progress."""

    id: int
    name: str
    state: str
    list_name: str
    script: str
    lines: int
    windows: list[list[str]]
    contacts: int
    targets: dict[str, int] = field(default_factory=dict)
    """pending / active / done counts."""
    results: dict[str, int] = field(default_factory=dict)
    """Final results of done contacts (completed, unreachable, ...)."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Attempt counts by state (queued, dialing, finished, interrupted, cancelled)."""
    record_calls: bool = False
    """Whole calls are recorded (both sides)."""
    tts_personal: str = "online"
    """``offline``: a contact's name, address… are synthesised on this box, never online."""
    pause_reason: str | None = None
    """Why the dispatcher paused the campaign by itself (the line is down; it resumes by
    itself); None when running or paused by staff."""

    @property
    def done(self) -> int:
        return self.targets.get("done", 0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["done"] = self.done
        return d


def get_campaign(session: Session, ref: int | str) -> Campaign:
    """A campaign by id or name; ``CampaignError`` when there is none."""
    c = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        c = session.get(Campaign, int(ref))
    if c is None:
        c = session.scalar(select(Campaign).where(Campaign.name == str(ref)))
    if c is None:
        raise CampaignError(f"没有这个活动：{ref} (no such campaign)")
    return c


def get_list(session: Session, ref: int | str) -> ContactList:
    """A contact list by id or name; CampaignError when there is none."""
    lst = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        lst = session.get(ContactList, int(ref))
    if lst is None:
        lst = session.scalar(select(ContactList).where(ContactList.name == str(ref)))
    if lst is None:
        raise CampaignError(f"没有这个名单：{ref} (no such contact list)")
    return lst


def list_campaigns(session: Session) -> list[Campaign]:
    """Every campaign, newest first."""
    return list(session.scalars(select(Campaign).order_by(Campaign.id)))


def create_campaign(
    session: Session,
    name: str,
    list_ref: int | str,
    script: str,
    *,
    lines: int = defaults.CAMPAIGN_LINES,
    windows: str | list[list[str]] | None = None,
    timezone: str = defaults.TIMEZONE,
    retry_policy: dict[str, Any] | None = None,
    daily_cap: int = defaults.DAILY_CAP,
    record_calls: bool = False,
    tts_personal: str = "online",
) -> Campaign:
    """Create a draft campaign over a stored list; one target row per contact. *record_calls*
    keeps whole calls (both sides) beside each reply's audio — personal data, off by default.
    *tts_personal* ``offline`` keeps the contact's name, address… off the online TTS engine."""
    from callbot.speech.tts import TTS_PERSONAL

    if tts_personal not in TTS_PERSONAL:
        raise CampaignError(f"tts_personal 只能是 online 或 offline，而不是 {tts_personal!r} "
                            "(tts_personal must be online or offline)")
    name = name.strip()
    if not name:
        raise CampaignError("活动名称不能为空 (campaign name is empty)")
    if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
        raise CampaignError(f"活动“{name}”已存在 (campaign exists)")
    if not 1 <= lines <= 10_000:
        raise CampaignError("线路数须在 1–10000 之间 (lines must be 1..10000)")
    if daily_cap < 1:
        raise CampaignError("每日上限须 ≥ 1 (daily cap must be ≥ 1)")
    w = Windows.parse(windows if windows is not None else list(defaults.CALLING_WINDOWS), timezone)
    RetryPolicy.from_json(retry_policy)  # validate
    lst = get_list(session, list_ref)
    _check_script(script, list_columns(lst))
    c = Campaign(name=name, list_id=lst.id, script=script, lines=lines, windows=w.as_list(),
                 timezone=timezone, retry_policy=retry_policy or {}, daily_cap=daily_cap,
                 record_calls=bool(record_calls), tts_personal=tts_personal, state="draft")
    session.add(c)
    session.flush()
    # one INSERT … SELECT in the database instead of reading the ids and writing them back
    session.execute(insert(table_of(Target)).from_select(
        ["campaign_id", "contact_id", "state", "attempts", "updated_at"],
        select(literal(c.id, Integer), Contact.id, literal("pending", String),
               literal(0, Integer), literal(utcnow(), DateTime))
        .where(Contact.list_id == lst.id).order_by(Contact.id)))
    return c


CONTACT_FIELDS = ("姓名", "name", "地址", "address", "电话", "phone", "note")
"""Variables every contact carries whatever the list's columns (see ``jobs.begin_dialing``)."""


def list_columns(lst: ContactList) -> list[str]:
    """The variables a call over this list can fill: the contact fields and the extra columns."""
    return [*CONTACT_FIELDS, *(lst.variables or [])]


def _check_script(script: str, columns: list[str] | None = None) -> None:
    """The template must load and validate (built-in name or YAML path), and, given the list's
    columns, use no variable the list lacks. ``CampaignError`` names file and line."""
    from callbot.exceptions import TemplateError
    from callbot.script import load_script

    try:
        load_script(script, columns=columns)
    except TemplateError as exc:
        if not exc.errors:
            raise CampaignError(f"话术模板无效：{exc}") from exc
        shown = "\n".join(f"  {e}" for e in exc.errors[:10])
        more = f"\n  ……另有 {len(exc.errors) - 10} 处" if len(exc.errors) > 10 else ""
        raise CampaignError(f"话术模板无效，共 {len(exc.errors)} 处错误 "
                            f"(invalid template):\n{shown}{more}") from exc


def start(session: Session, ref: int | str) -> Campaign:
    """Start a draft campaign (its contacts become due)."""
    c = get_campaign(session, ref)
    if c.state != "draft":
        raise CampaignError(f"活动状态为 {c.state}，只能启动草稿 (only a draft can start)")
    c.state = "running"
    c.started_at = utcnow()
    return c


def pause(session: Session, ref: int | str) -> Campaign:
    """Stop dialling new contacts; calls in progress finish; queued attempts are withdrawn."""
    c = get_campaign(session, ref)
    if c.state != "running":
        raise CampaignError(f"活动状态为 {c.state}，无法暂停 (not running)")
    c.state, c.pause_reason, c.paused_at = "paused", None, utcnow()  # staff's pause: theirs to end
    withdraw_queued(session, c.id, cancel_targets=False)
    return c


def resume(session: Session, ref: int | str) -> Campaign:
    """Resume a paused campaign."""
    c = get_campaign(session, ref)
    if c.state != "paused":
        raise CampaignError(f"活动状态为 {c.state}，无法继续 (not paused)")
    c.state, c.pause_reason = "running", None
    return c


def cancel(session: Session, ref: int | str) -> Campaign:
    """End the campaign: nobody else is dialled; calls in progress finish and are recorded."""
    c = get_campaign(session, ref)
    if c.state in ("finished", "cancelled"):
        raise CampaignError(f"活动已{c.state}，无法取消 (already over)")
    c.state = "cancelled"
    c.finished_at = utcnow()
    withdraw_queued(session, c.id, cancel_targets=True)
    session.execute(update(Target).where(Target.campaign_id == c.id, Target.state == "pending")
                    .values(state="done", result="cancelled"))
    return c


def withdraw_queued(session: Session, campaign_id: int, *, cancel_targets: bool) -> None:
    """Queued (never dialled) attempts become cancelled; their targets go back or end."""
    rows = session.execute(
        select(Attempt.id, Attempt.target_id).where(
            Attempt.campaign_id == campaign_id, Attempt.state == "queued")).all()
    if not rows:
        return
    att_ids = [r[0] for r in rows]
    tgt_ids = [r[1] for r in rows]
    session.execute(update(Attempt).where(Attempt.id.in_(att_ids), Attempt.state == "queued")
                    .values(state="cancelled", ended_at=utcnow()))
    values = {"state": "done", "result": "cancelled"} if cancel_targets else {"state": "pending"}
    session.execute(update(Target).where(Target.id.in_(tgt_ids), Target.state == "active")
                    .values(**values))


def status(session: Session, ref: int | str) -> CampaignStatus:
    """Where a campaign stands: its contacts by state and the results so far."""
    c = get_campaign(session, ref)
    targets = dict(session.execute(
        select(Target.state, func.count()).where(Target.campaign_id == c.id)
        .group_by(Target.state)).all())
    results = dict(session.execute(
        select(Target.result, func.count()).where(
            Target.campaign_id == c.id, Target.state == "done").group_by(Target.result)).all())
    attempts = dict(session.execute(
        select(Attempt.state, func.count()).where(Attempt.campaign_id == c.id)
        .group_by(Attempt.state)).all())
    return CampaignStatus(
        id=c.id, name=c.name, state=c.state, list_name=c.list.name, script=c.script,
        lines=c.lines, windows=c.windows, contacts=sum(targets.values()),
        targets={k: int(v) for k, v in targets.items()},
        results={str(k): int(v) for k, v in results.items()},
        attempts={k: int(v) for k, v in attempts.items()}, record_calls=bool(c.record_calls),
        tts_personal=c.tts_personal or "online",
        pause_reason=c.pause_reason if c.state == "paused" else None)


def add_do_not_call(session: Session, phone: str, reason: str = "") -> DoNotCall:
    """Put a number on the do-not-call list (any format ``contacts.normalize_phone`` reads)."""
    from callbot.contacts import normalize_phone

    try:
        e164, _, _ = normalize_phone(phone)
    except ValueError as exc:
        raise CampaignError(str(exc)) from exc
    row = session.scalar(select(DoNotCall).where(DoNotCall.phone == e164))
    if row is None:
        row = DoNotCall(phone=e164, reason=reason)
        session.add(row)
        session.flush()
    return row


def remove_do_not_call(session: Session, phone: str) -> bool:
    """Take a number off the do-not-call list; False when it was not on it."""
    from callbot.contacts import normalize_phone

    e164, _, _ = normalize_phone(phone)
    row = session.scalar(select(DoNotCall).where(DoNotCall.phone == e164))
    if row is None:
        return False
    session.delete(row)
    return True
