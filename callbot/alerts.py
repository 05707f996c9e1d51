"""Alerts: residents who need someone now, told to the committee at once and never lost.

An alert is a row of the ``alerts`` table written **in the same transaction** as the answer or the
result that caused it (an outbox): a resident who needs help (``welfare = needs_help``; urgent when
the ``urgent`` field is true), a resident who asked for a person and could not be put through, a
welfare contact who stayed unreachable after every attempt. The dispatcher then delivers it to the
committee's group robot (企业微信 / 钉钉 webhook: ``{"msgtype": "text", "text": {"content": …}}``)
with retries and backoff (:class:`Deliverer`); the web app shows it at once on the 待处理 page.

Each alert is also a follow-up item: claimed by a staff member, marked 已联系 / 已上门 / 已解决 with
a note, reopened (:func:`follow_up`); every change goes to the audit log.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from callbot import defaults, labels
from callbot.campaign.models import DIALLED_OVER, Attempt, Campaign, Contact, utcnow
from callbot.committees import CommitteeConfig, committee_of_campaign, config_for, masked_webhook
from callbot.config import Settings
from callbot.db import Base, changed, session_scope
from callbot.exceptions import AlertDeliveryError, CallbotError

log = logging.getLogger(__name__)

REASONS = ("needs_help", "human", "unreachable", "callback")
"""Why an alert was raised: needs help (urgent for an emergency), asked for a person and not put
through, unreachable after all attempts, asked to be called back and never reached again."""

STATES = ("open", "claimed", "contacted", "visited", "resolved")
"""Follow-up states: open → claimed → contacted / visited → resolved (reopen → open)."""

UNRESOLVED = ("open", "claimed", "contacted", "visited")

ACTIONS = {"claim": "claimed", "contacted": "contacted", "visited": "visited",
           "resolved": "resolved", "reopen": "open"}
"""Follow-up actions and the state each leads to."""



class FollowUpError(CallbotError):
    """A follow-up change is not allowed (unknown alert or action, missing note)."""


class Alert(Base):
    """One alert / follow-up item (the outbox row)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_state_urgent", "state", "urgent"),
        Index("ix_alerts_delivery_next", "delivery", "next_try_at"),
        Index("ix_alerts_campaign_contact", "campaign_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    """When the answer or result that raised it was stored (naive UTC)."""
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("attempts.id", ondelete="SET NULL"), nullable=True)
    committee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The owning committee of the campaign; None for CLI / demo campaigns (the installation's)."""
    reason: Mapped[str] = mapped_column(String(32))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    said: Mapped[str] = mapped_column(Text, default="")
    """What the resident said (the reply that raised it), for the group chat and the page."""
    detail: Mapped[str] = mapped_column(Text, default="")
    """What happened, when it is not a reply (e.g. 拨打 3 次未接通, 值班电话无人接听)."""
    # follow-up
    state: Mapped[str] = mapped_column(String(16), default="open")
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    handled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Who made the last follow-up change."""
    handled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    """The note of the last follow-up change."""
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # delivery (the outbox)
    delivery: Mapped[str] = mapped_column(String(16), default="pending")
    tries: Mapped[int] = mapped_column(Integer, default=0)
    """Delivery attempts made (failed ones and the one that succeeded)."""
    next_try_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    sending_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    destination: Mapped[str] = mapped_column(String(300), default="")
    """Where it went (the webhook with its key hidden)."""
    content: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The text sent to the group (kept as sent)."""

    @property
    def reason_label(self) -> str:
        """Why it was raised, as staff read it (``labels.FOLLOW_UP_REASONS``)."""
        return labels.follow_up_reason(self.reason)

    @property
    def state_label(self) -> str:
        """Its follow-up state, as staff read it (``labels.FOLLOW_UP_STATES``)."""
        return labels.follow_up_state(self.state)

    @property
    def delivery_label(self) -> str:
        """Its delivery to the group robot, as staff read it (``labels.DELIVERIES``)."""
        return labels.delivery(self.delivery)


# --- raising (inside the caller's transaction) ----------------------------------------------------

@dataclass(frozen=True)
class AlertSpec:
    """An alert a call raises (from the dialogue's ``Alert`` action)."""

    reason: str
    urgent: bool = False
    said: str = ""
    detail: str = ""


def raise_alert(s: Session, *, campaign_id: int, contact_id: int, reason: str,
                attempt_id: int | None = None, urgent: bool = False, said: str = "",
                detail: str = "") -> Alert:
    """Write an alert in the caller's transaction (commit together with what caused it).

    One alert per attempt and reason (per contact for unreachable / call back): raising it again
    makes it urgent and adds what was said, and an alert already delivered that becomes urgent
    gets a second, urgent alert (the group must hear it)."""
    if reason not in REASONS:
        raise ValueError(f"unknown alert reason {reason!r}; known: {', '.join(REASONS)}")
    q = select(Alert).where(Alert.campaign_id == campaign_id, Alert.contact_id == contact_id,
                            Alert.reason == reason)
    if attempt_id is not None and reason in ("needs_help", "human"):
        q = q.where(Alert.attempt_id == attempt_id)
    else:
        q = q.where(Alert.state.in_(UNRESOLVED))
    existing = s.scalars(q.order_by(Alert.id.desc()).limit(1)).first()
    if existing is not None:
        sent = existing.delivery in ("sending", "delivered")
        if not (urgent and not existing.urgent and sent):
            existing.urgent = existing.urgent or urgent
            if said and said not in existing.said:
                existing.said = f"{existing.said}；{said}" if existing.said else said
            if detail and not existing.detail:
                existing.detail = detail
            return existing
    a = Alert(campaign_id=campaign_id, contact_id=contact_id, attempt_id=attempt_id,
              committee=committee_of_campaign(s, campaign_id), reason=reason, urgent=urgent,
              said=said, detail=detail, state="open", delivery="pending", tries=0, note="",
              destination="", created_at=utcnow())
    s.add(a)
    s.flush()
    return a


def is_welfare(script: str) -> bool:
    """True when a campaign's template records ``welfare`` (unreached contacts then alert)."""
    from callbot.script import tabulations

    return "welfare" in tabulations(script)


# --- follow-up -----------------------------------------------------------------------------------

def follow_up(s: Session, alert_id: int, action: str, user: str, note: str = "", *,
              ip: str | None = None) -> Alert:
    """Apply one follow-up action (claim, contacted, visited, resolved, reopen) by *user* and
    audit it, in the caller's transaction. Resolving needs a note (what was done)."""
    from callbot.accounts import audit

    if action not in ACTIONS:
        raise FollowUpError(f"未知的操作 {action!r} (unknown action); 可用: {', '.join(ACTIONS)}")
    a = s.get(Alert, alert_id)
    if a is None:
        raise FollowUpError(f"没有编号为 {alert_id} 的待处理事项 (no such alert)")
    note = (note or "").strip()
    if action == "resolved" and not note:
        raise FollowUpError("标记已解决时请写一句处理情况 (a note is needed to resolve)")
    if action == "reopen" and a.state != "resolved":
        raise FollowUpError("只有已解决的事项可以重新打开 (only resolved items can be reopened)")
    if action != "reopen" and a.state == "resolved":
        raise FollowUpError("这一项已解决；如需继续跟进请先重新打开 (resolved: reopen it first)")
    now = utcnow()
    before = a.state
    a.state = ACTIONS[action]
    a.handled_by, a.handled_at = user, now
    if note:
        a.note = note
    if action == "reopen":
        a.resolved_at = None
        a.claimed_by, a.claimed_at = None, None
    else:
        if action == "claim" or a.claimed_by is None:
            a.claimed_by, a.claimed_at = user, now
        if action == "resolved":
            a.resolved_at = now
    detail = (f"{labels.follow_up_state(before)} → {labels.follow_up_state(a.state)}"
              + (f"：{note}" if note else ""))
    audit(s, user, f"alert_{action}", f"alert:{a.id}", detail, ip=ip)
    return a


# --- the message ---------------------------------------------------------------------------------

def _place(ct: Contact) -> str:
    v = ct.variables or {}
    parts = [ct.address] if ct.address else [str(v.get(k)) for k in ("楼栋", "房号") if v.get(k)]
    return " ".join(p for p in parts if p) or "（无地址）"


def local_time(t: datetime, tz: str, fmt: str = "%m-%d %H:%M") -> str:
    """A naive-UTC timestamp in the committee's time zone."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    return t.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).strftime(fmt)


def contact_path(a: Alert) -> str:
    """The web path of the contact's call page (what the message links to)."""
    return f"/campaigns/{a.campaign_id}/contacts/{a.contact_id}"


def compose(s: Session, a: Alert, cfg: CommitteeConfig, settings: Settings) -> str:
    """The group-chat text of an alert: urgency, reason, resident, building/room, phone (masked
    unless the committee opted in), what was said, the campaign, a link, the alert's id."""
    from callbot.accounts import mask_phone

    ct = s.get(Contact, a.contact_id)
    c = s.get(Campaign, a.campaign_id)
    assert ct is not None and c is not None
    phone = ct.dial or ct.phone
    head = f"【{'紧急' if a.urgent else '提醒'}】{a.reason_label}"
    lines = [head, f"居民：{ct.name or '（无姓名）'}　{_place(ct)}",
             f"电话：{phone if cfg.full_phone else mask_phone(phone)}"]
    if a.said:
        lines.append(f"原话：“{a.said}”")
    if a.detail:
        lines.append(f"情况：{a.detail}")
    lines.append(f"活动：{c.name}（{cfg.name}）")
    base = (settings.extra.get("public_url") or "").rstrip("/")
    if base:
        lines.append(f"处理：{base}{contact_path(a)}")
    lines.append(f"编号：#{a.id} · {local_time(a.created_at, settings.timezone)}")
    return "\n".join(lines)


# --- delivery ------------------------------------------------------------------------------------

def post_webhook(url: str, content: str, timeout: float = defaults.ALERT_HTTP_TIMEOUT_S) -> None:
    """POST a text message to a 企业微信 / 钉钉 group robot; AlertDeliveryError unless it answers
    2xx with ``errcode`` 0 (or no errcode at all)."""
    body = json.dumps({"msgtype": "text", "text": {"content": content}},
                      ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - admin's URL
            raw = resp.read(65536)
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertDeliveryError(f"连接失败 (cannot reach the webhook): {reason}") from None
    try:
        reply = json.loads(raw.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AlertDeliveryError(f"群机器人的回复不是 JSON (reply is not JSON): {raw[:80]!r}") from None
    code = reply.get("errcode", 0) if isinstance(reply, dict) else 0
    if code not in (0, "0", None):
        raise AlertDeliveryError(f"errcode {code}: {reply.get('errmsg', '')}")


def backoff_s(tries: int) -> float:
    """Wait after the *tries*-th failed delivery: 2, 4, 8, … capped at ALERT_RETRY_MAX_S."""
    return float(min(defaults.ALERT_RETRY_MAX_S,
                     defaults.ALERT_RETRY_FIRST_S * 2 ** max(0, tries - 1)))


@dataclass
class DeliveryStats:
    """What one delivery pass did: sent, failed (to retry), skipped for want of a webhook."""

    delivered: int = 0
    failed: int = 0
    unconfigured: int = 0
    errors: list[str] = field(default_factory=list)


Poster = Callable[[str, str], None]


class Deliverer:
    """Sends due alerts, one at a time, urgent first. Safe to run in several processes: a row is
    claimed (``pending``/``retrying`` → ``sending``) by one atomic UPDATE before its POST."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, *,
                 post: Poster | None = None, clock: Callable[[], datetime] = utcnow):
        self.factory = factory
        self.settings = settings
        self.post: Poster = post or post_webhook
        self.clock = clock

    def run_once(self, limit: int = defaults.ALERT_BATCH) -> DeliveryStats:
        """One pass over the alerts due now."""
        stats = DeliveryStats()
        now = self.clock()
        self._reset_stale(now)
        with session_scope(self.factory) as s:
            due = s.scalars(select(Alert.id).where(
                Alert.delivery.in_(("pending", "retrying")),
                or_(Alert.next_try_at.is_(None), Alert.next_try_at <= now))
                .order_by(Alert.urgent.desc(), Alert.id).limit(limit)).all()
        for aid in due:
            self._deliver(aid, stats)
        return stats

    def _reset_stale(self, now: datetime) -> None:
        cutoff = now - timedelta(seconds=defaults.ALERT_SENDING_STALE_S)
        with session_scope(self.factory) as s:
            n = changed(s, update(Alert).where(Alert.delivery == "sending",
                                               Alert.sending_since < cutoff)
                        .values(delivery="retrying", next_try_at=now, sending_since=None))
        if n:
            log.warning("alerts: %d delivery(ies) left mid-POST by a dead process, retrying", n)

    def _deliver(self, aid: int, stats: DeliveryStats) -> None:
        now = self.clock()
        with session_scope(self.factory) as s:
            if not changed(s, update(Alert).where(
                    Alert.id == aid, Alert.delivery.in_(("pending", "retrying")))
                    .values(delivery="sending", sending_since=now)):
                return  # another deliverer took it
            a = s.get(Alert, aid)
            assert a is not None
            cfg = config_for(s, a.committee, self.settings)
            if not cfg.webhook_url:
                a.delivery, a.sending_since = "none", None
                stats.unconfigured += 1
                return
            url = cfg.webhook_url
            content = compose(s, a, cfg, self.settings)
            a.content, a.destination = content, masked_webhook(url)[:300]
        try:
            self.post(url, content)
        except AlertDeliveryError as exc:
            with session_scope(self.factory) as s:
                a = s.get(Alert, aid)
                if a is not None:
                    a.tries += 1
                    a.delivery, a.sending_since = "retrying", None
                    a.last_error = str(exc)[:500]
                    a.next_try_at = self.clock() + timedelta(seconds=backoff_s(a.tries))
            stats.failed += 1
            stats.errors.append(str(exc))
            log.warning("alert #%s not delivered (%s); retrying", aid, exc)
            return
        with session_scope(self.factory) as s:
            a = s.get(Alert, aid)
            if a is not None:
                a.tries += 1
                a.delivery, a.sending_since = "delivered", None
                a.delivered_at, a.next_try_at = self.clock(), None
        stats.delivered += 1

    def loop(self, stop: threading.Event, interval_s: float = defaults.ALERT_POLL_S,
             lead: Callable[[], bool] | None = None) -> None:
        """Deliver until *stop* is set (the dispatcher runs this on a thread of its own process:
        a slow webhook never holds up dialling). *lead*: deliver only while it returns True."""
        while not stop.is_set():
            try:
                if lead is None or lead():
                    self.run_once()
            except Exception:
                log.exception("alert delivery pass failed; retrying")
            stop.wait(interval_s)


# --- queries for the pages ----------------------------------------------------------------------

def visible_query(hidden_campaigns: Iterable[str] = ()) -> Any:
    """Alerts of campaigns the viewer may see (*hidden_campaigns*: ids of others' campaigns)."""
    q = select(Alert)
    hidden = [int(x) for x in hidden_campaigns]
    if hidden:
        q = q.where(Alert.campaign_id.not_in(hidden))
    return q


def open_count(s: Session, hidden_campaigns: Iterable[str] = ()) -> tuple[int, int]:
    """(unresolved, of which urgent) alerts the viewer may see."""
    hidden = [int(x) for x in hidden_campaigns]
    q = select(func.count(), func.sum(func.cast(Alert.urgent, Integer))).where(
        Alert.state.in_(UNRESOLVED))
    if hidden:
        q = q.where(Alert.campaign_id.not_in(hidden))
    n, urgent = s.execute(q).one()
    return int(n or 0), int(urgent or 0)


def latest_by_contact(s: Session, campaign_id: int) -> dict[int, Alert]:
    """contact id → that contact's most recent alert in the campaign (follow-up state)."""
    out: dict[int, Alert] = {}
    for a in s.scalars(select(Alert).where(Alert.campaign_id == campaign_id).order_by(Alert.id)):
        out[a.contact_id] = a
    return out


def attempts_text(s: Session, target_id: int) -> str:
    """拨打 3 次未接通（最后一次：无人接听）: the detail of an unreachable alert."""
    rows = s.execute(select(Attempt.outcome).where(
        Attempt.target_id == target_id, Attempt.state.in_(DIALLED_OVER))
        .order_by(Attempt.id)).all()
    if not rows:
        return "未能拨通"
    last = labels.outcome(rows[-1][0]) if rows[-1][0] else ""
    return f"拨打 {len(rows)} 次未能完成回访（最后一次：{last}）"
