"""Results of one campaign: mask tabulation (totals, per building, distribution list), welfare
follow-up list (needs help first, then call-back requests, then unreachable), filters, and CSV/XLSX exports."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for

from callbot import labels, reports
from callbot.campaign.models import Campaign
from callbot.script import field_labels, tabulations
from web.auth import WRITE_ROLES, readable, record, roles_required
from web.charts import BAD, GOOD, NEUTRAL, WARN, hbar
from web.scope import require_visible
from web.scriptstore import script_title
from web.store import db

bp = Blueprint("results", __name__, url_prefix="/results")


def _campaign(campaign_id: int) -> Campaign:
    require_visible("campaign", campaign_id)
    c = db().get(Campaign, campaign_id)
    if c is None:
        abort(404)
    return c


def _matches(q: str, *values: Any) -> bool:
    return not q or any(q in str(v or "") for v in values)


@bp.route("/<int:campaign_id>")
@readable
def show(campaign_id: int) -> Any:
    """The tabulation that fits the campaign's script, with filters."""
    c = _campaign(campaign_id)
    rows = reports.contact_rows(db(), c)
    summary = reports.summary(db(), c)
    kinds = tabulations(c.script, {k for r in rows for k in r["answers"]})
    kind = "mask" if "mask" in kinds else "welfare" if "welfare" in kinds else "other"
    q = request.args.get("q", "").strip()
    building = request.args.get("building", "").strip()
    reason = request.args.get("reason", "").strip()
    ctx: dict[str, Any] = {"c": c, "kind": kind, "s": summary, "q": q, "building": building,
                           "reason": reason, "script_title": script_title,
                           "fl": field_labels(c.script)}
    if kind == "mask":
        m = reports.masks_table(db(), c, rows)
        dist = [d for d in m["distribution"]
                if (not building or d["building"] == building)
                and _matches(q, d["name"], d["address"])]
        ctx.update(m=m, dist=dist, buildings=list(m["per_building"]),
                   chart=hbar([(b, d["masks"]) for b, d in m["per_building"].items()],
                              unit=" 盒", title="各楼栋预约口罩数"))
    elif kind == "welfare":
        w = reports.welfare_table(db(), c, rows)
        follow = [d for d in w["follow_up"] if (not reason or d["reason"] == reason)
                  and _matches(q, d["name"], d["address"], d["note"])]
        counts = w["counts"]
        shown = ("ok", "needs_help", "human", "callback", "unreachable", "pending")
        ctx.update(w=w, follow=follow, chart=hbar(
            [(labels.welfare(k), counts[k]) for k in shown], unit=" 人", title="关怀回访结果", colors=[GOOD, BAD, WARN, WARN, WARN, NEUTRAL]))
    else:
        ctx.update(rows=[r for r in rows if _matches(q, r["name"], r["address"])])
    return render_template("results/show.html", **ctx)


@bp.route("/<int:campaign_id>/export.<fmt>")
@roles_required(*WRITE_ROLES)
def export(campaign_id: int, fmt: str) -> Any:
    """Per-contact export (formula-safe); audited. Supervisors read the aggregate reports."""
    if fmt not in ("csv", "xlsx"):
        abort(404)
    c = _campaign(campaign_id)
    def link(rec_id: int) -> str:
        return url_for("recordings.audio", rec_id=rec_id, _external=True)

    if fmt == "csv":
        data = reports.export_csv(db(), c, audio_link=link)
        mime = "text/csv; charset=utf-8"
    else:
        data = reports.export_xlsx(db(), c, audio_link=link)
        mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    record("export", f"campaign:{c.id} {c.name}", fmt)
    db().commit()
    from urllib.parse import quote

    filename = f"{c.name}-结果.{fmt}"
    resp = Response(data, mimetype=mime)
    resp.headers["Content-Disposition"] = (
        f"attachment; filename=\"campaign-{c.id}.{fmt}\"; filename*=UTF-8''{quote(filename)}")
    return resp
