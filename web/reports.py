"""Reports for supervisors: connection rates (both definitions, stated on the page), completion
rate, outcomes, by hour and by attempt number, talk time; charts as server-rendered SVG."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from callbot import labels, reports
from callbot.campaign.models import Campaign
from web.auth import roles_required
from web.charts import NEUTRAL, TONE, columns, hbar
from web.scriptstore import script_title
from web.store import db

bp = Blueprint("reports", __name__, url_prefix="/reports")

READERS = ("supervisor", "admin")


@bp.route("/")
@roles_required(*READERS)
def index() -> Any:
    """Every campaign's headline figures side by side, and the totals."""
    camps = db().scalars(select(Campaign).order_by(Campaign.id.desc())).all()
    rows = [reports.summary(db(), c) for c in camps]
    tot = {k: sum(r[k] for r in rows) for k in
           ("contacts", "attempts", "answered_attempts", "reached_contacts", "completed_contacts")}
    tot["connection_rate_attempts"] = (tot["answered_attempts"] / tot["attempts"]
                                       if tot["attempts"] else 0.0)
    tot["connection_rate_contacts"] = (tot["reached_contacts"] / tot["contacts"]
                                       if tot["contacts"] else 0.0)
    tot["completion_rate"] = (tot["completed_contacts"] / tot["contacts"]
                              if tot["contacts"] else 0.0)
    return render_template("reports/index.html", rows=rows, tot=tot, script_title=script_title)


@bp.route("/<int:campaign_id>")
@roles_required(*READERS)
def show(campaign_id: int) -> Any:
    """One campaign's report."""
    c = db().get(Campaign, campaign_id)
    if c is None:
        abort(404)
    s = reports.summary(db(), c)
    outcomes = sorted(s["outcomes"].items(), key=lambda kv: -kv[1])
    hours = list(s["by_hour"])
    by_attempt = sorted(s["by_attempt"].items())
    results = sorted(s["results"].items(), key=lambda kv: -kv[1])
    charts = {
        "outcomes": hbar([(labels.outcome(k), v) for k, v in outcomes], unit=" 次", title="通话结果分布",
                         colors=[TONE.get(k, NEUTRAL) for k, _v in outcomes]),
        "hours": columns([f"{h}时" for h in hours],
                         [("拨打", [s["by_hour"][h]["attempts"] for h in hours]),
                          ("接通", [s["by_hour"][h]["answered"] for h in hours])],
                         title="按小时：拨打与接通（当地时间）"),
        "attempts": columns([f"第{n}次" for n, _d in by_attempt],
                            [("拨打", [d["attempts"] for _n, d in by_attempt]),
                             ("接通", [d["answered"] for _n, d in by_attempt]),
                             ("完成话术", [d["completed"] for _n, d in by_attempt])],
                            title="按第几次拨打"),
        "results": hbar([(labels.result(k), v) for k, v in results], unit=" 人", title="联系人最终结果",
                        colors=[TONE.get(k, NEUTRAL) for k, _v in results]),
    }
    return render_template("reports/show.html", c=c, s=s, outcomes=outcomes, charts=charts,
                           by_attempt=by_attempt, hours=hours, script_title=script_title)
