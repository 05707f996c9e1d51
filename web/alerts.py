"""待处理: the alerts raised by calls (needs help, a person asked for, unreachable), their delivery
to the group chat, and the follow-up workflow (claim, 已联系 / 已上门 / 已解决 with a note, reopen).

Every page shows the count of unresolved items (``summary.json`` keeps it live); the list updates
itself while calls run. Staff and admins act on items; supervisors read, and see per committee
how many are open and how long they have waited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from callbot import alerts, labels
from callbot.accounts import AuditLog
from callbot.alerts import Alert, FollowUpError
from callbot.campaign.models import Campaign, Contact, utcnow
from web.auth import WRITE_ROLES, readable, roles_required
from web.scope import hidden_ids, require_visible
from web.store import db, settings

bp = Blueprint("alerts", __name__, url_prefix="/alerts")

SHOWN = 300
"""Most rows the list shows (urgent and oldest first)."""


def _hidden() -> set[str]:
    return hidden_ids("campaign")


def _own(alert_id: int) -> Alert:
    a = db().get(Alert, alert_id)
    if a is None:
        abort(404)
    require_visible("campaign", a.campaign_id)
    return a


def committee_label(name: str | None) -> str:
    """A committee's name as shown; the installation's for campaigns without one."""
    return name or settings().committee


def waited(a: Alert, now: datetime | None = None) -> str:
    """How long the item has waited (until resolved), as staff read it: 3 分钟, 2 小时 5 分."""
    end = a.resolved_at or now or utcnow()
    minutes = max(0, int((end - a.created_at).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} 分钟"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} 小时 {rest} 分"
    return f"{hours // 24} 天 {hours % 24} 小时"


def summary() -> dict[str, Any]:
    """Counts for the badge on every page and a version that changes with any alert change."""
    hidden = _hidden()
    n, urgent = alerts.open_count(db(), hidden)
    q = select(func.count(), func.max(Alert.id), func.max(Alert.handled_at),
               func.max(Alert.delivered_at), func.sum(Alert.tries))
    failing_q = select(func.count()).select_from(Alert).where(Alert.delivery == "retrying")
    if hidden:
        q = q.where(Alert.campaign_id.not_in([int(x) for x in hidden]))
        failing_q = failing_q.where(Alert.campaign_id.not_in([int(x) for x in hidden]))
    total, top, handled, delivered, tries = db().execute(q).one()
    failing = int(db().scalar(failing_q) or 0)
    version = f"{total}-{top}-{handled}-{delivered}-{tries}-{n}"
    return {"open": n, "urgent": urgent, "failing": failing, "version": version}


def init_app(app: Any) -> None:
    """Give every page the open-alert badge's counts (``alerts_open``, ``alerts_urgent``)."""

    @app.context_processor
    def _alert_badge() -> dict[str, Any]:
        if not current_user.is_authenticated:
            return {}
        try:
            n, urgent = alerts.open_count(db(), _hidden())
        except Exception:  # noqa: BLE001 - a page must render even if the count cannot
            return {}
        return {"alerts_open": n, "alerts_urgent": urgent}


@bp.route("/summary.json")
@readable
def summary_json() -> Any:
    """The open follow-up counts as JSON (polled by the navigation badge)."""
    return jsonify(summary())


@bp.route("/")
@readable
def index() -> Any:
    """The 待处理 list: urgent first, then the longest waiting; filter by committee, campaign,
    state (default: everything not yet resolved)."""
    hidden = _hidden()
    state = request.args.get("state", "unresolved")
    committee = request.args.get("committee", "")
    campaign = request.args.get("campaign", "")
    q = alerts.visible_query(hidden)
    if state == "unresolved":
        q = q.where(Alert.state.in_(alerts.UNRESOLVED))
    elif state in alerts.STATES:
        q = q.where(Alert.state == state)
    if committee == "-":
        q = q.where(Alert.committee.is_(None))
    elif committee:
        q = q.where(Alert.committee == committee)
    if campaign.isdigit() and len(campaign) < 18:  # a longer one is no campaign (not a 500)
        q = q.where(Alert.campaign_id == int(campaign))
    rows = db().scalars(q.order_by(Alert.state == "resolved", Alert.urgent.desc(),
                                   Alert.created_at, Alert.id).limit(SHOWN)).all()
    contacts = {ct.id: ct for ct in db().scalars(
        select(Contact).where(Contact.id.in_({a.contact_id for a in rows})))} if rows else {}
    visible_campaigns = [c for c in db().scalars(select(Campaign).where(Campaign.id.in_(
        select(Alert.campaign_id).distinct())).order_by(Campaign.id.desc()))
        if str(c.id) not in hidden]
    names = {c.id: c.name for c in visible_campaigns}
    committees = sorted({a for a in db().scalars(select(Alert.committee).distinct())},
                        key=lambda x: (x is not None, x or ""))
    failing = db().scalars(alerts.visible_query(hidden).where(Alert.delivery == "retrying")
                           .order_by(Alert.id.desc()).limit(1)).first()
    return render_template(
        "alerts/index.html", rows=rows, contacts=contacts, names=names,
        campaigns=visible_campaigns, committees=committees, state=state, committee=committee,
        campaign=campaign, waited=waited, committee_label=committee_label, s=summary(),
        failing=failing, states=labels.FOLLOW_UP_STATES)


@bp.route("/committees")
@roles_required("supervisor", "admin", "staff")
def committees() -> Any:
    """Per committee: unresolved items, urgent ones, the longest and the mean wait so far."""
    hidden = _hidden()
    rows = db().scalars(alerts.visible_query(hidden).where(
        Alert.state.in_(alerts.UNRESOLVED)).order_by(Alert.created_at)).all()
    now = utcnow()
    per: dict[str | None, dict[str, Any]] = {}
    for a in rows:
        d = per.setdefault(a.committee, {"open": 0, "urgent": 0, "unclaimed": 0, "waits": [],
                                          "oldest": a})
        d["open"] += 1
        d["urgent"] += int(a.urgent)
        d["unclaimed"] += int(a.state == "open")
        d["waits"].append((now - a.created_at).total_seconds())
    resolved = db().execute(
        alerts.visible_query(hidden).with_only_columns(Alert.committee, func.count())
        .where(Alert.state == "resolved").group_by(Alert.committee)).all()
    done = {c: n for c, n in resolved}
    table = []
    for name, d in sorted(per.items(), key=lambda kv: -kv[1]["urgent"] * 1000 - kv[1]["open"]):
        mean_min = sum(d["waits"]) / len(d["waits"]) / 60
        table.append({"committee": committee_label(name), "raw": name or "-", "open": d["open"],
                      "urgent": d["urgent"], "unclaimed": d["unclaimed"],
                      "oldest": waited(d["oldest"], now), "mean": f"{mean_min:.0f} 分钟",
                      "resolved": done.get(name, 0)})
    for name, n in done.items():
        if name not in per:
            table.append({"committee": committee_label(name), "raw": name or "-", "open": 0,
                          "urgent": 0, "unclaimed": 0, "oldest": "—", "mean": "—", "resolved": n})
    return render_template("alerts/committees.html", table=table, rows=rows, waited=waited,
                           committee_label=committee_label, now=now)


@bp.route("/<int:alert_id>")
@readable
def show(alert_id: int) -> Any:
    """One item: who, what was said, what went to the group chat, its follow-up history."""
    a = _own(alert_id)
    ct = db().get(Contact, a.contact_id)
    c = db().get(Campaign, a.campaign_id)
    history = db().scalars(select(AuditLog).where(AuditLog.target == f"alert:{a.id}")
                           .order_by(AuditLog.id)).all()
    return render_template("alerts/show.html", a=a, ct=ct, c=c, history=history,
                           waited=waited, committee_label=committee_label)


@bp.route("/<int:alert_id>/<action>", methods=["POST"])
@roles_required(*WRITE_ROLES)
def act(alert_id: int, action: str) -> Any:
    """Claim, mark contacted / visited / resolved (with a note), or reopen; audited."""
    a = _own(alert_id)
    if action not in alerts.ACTIONS:
        abort(404)
    try:
        alerts.follow_up(db(), a.id, action, current_user.name, request.form.get("note", ""),
                         ip=request.remote_addr)
        db().commit()
        flash(f"#{a.id} {labels.follow_up_action(action)}：{a.state_label}", "ok")
    except FollowUpError as exc:
        db().rollback()
        flash(str(exc), "error")
    nxt = request.form.get("next", "")
    if nxt.startswith("/") and not nxt.startswith("//"):
        return redirect(nxt)
    return redirect(url_for("alerts.show", alert_id=alert_id))
