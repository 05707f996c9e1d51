"""The resident's voice: reply audio and whole-call recordings served to the pages that show them
(same role and committee scoping as the contact page, HTTP range requests for the player), and the
admin's deletion of one resident's recordings and transcripts (audited)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from callbot import recordings
from callbot.accounts import mask_phone
from callbot.campaign.models import Attempt, Contact
from callbot.exceptions import RecordingError
from web.auth import readable, roles_required
from web.scope import require_visible
from web.store import db, settings

bp = Blueprint("recordings", __name__, url_prefix="/recordings")


def _factory() -> Any:
    from flask import current_app

    return current_app.extensions["callbot_sessionmaker"]


def _store() -> recordings.AudioStore:
    return recordings.open_store(settings(), _factory())


@bp.route("/<int:rec_id>.ogg")
@readable
def audio(rec_id: int) -> Any:
    """One recording's audio (Ogg Opus); 404 for another committee's campaign, as its page."""
    rec = db().get(recordings.Recording, rec_id)
    if rec is None:
        abort(404)
    require_visible("campaign", rec.campaign_id)
    try:
        data = _store().get(rec.key)
    except RecordingError:
        abort(404, "录音已删除。")
    resp = Response(data, mimetype=rec.mime)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    resp.headers["Content-Disposition"] = f'inline; filename="recording-{rec.id}.ogg"'
    return resp.make_conditional(request, accept_ranges=True, complete_length=len(data))


def counts_for(phone: str) -> dict[str, int]:
    """What :func:`recordings.forget_resident` would delete for *phone* (E.164)."""
    contact_ids = select(Contact.id).where(Contact.phone == phone)
    recs = db().scalar(select(func.count()).select_from(recordings.Recording).where(
        (recordings.Recording.phone == phone)
        | recordings.Recording.contact_id.in_(contact_ids))) or 0
    transcripts = db().scalar(select(func.count()).select_from(Attempt).where(
        Attempt.contact_id.in_(contact_ids), Attempt.transcript.is_not(None))) or 0
    return {"recordings": int(recs), "transcripts": int(transcripts)}


@bp.route("/forget", methods=["GET", "POST"])
@roles_required("admin")
def forget() -> Any:
    """Admin: delete one resident's recordings and transcripts in every campaign (audited)."""
    from callbot.contacts import normalize_phone

    raw = (request.values.get("phone") or "").strip()
    found: dict[str, int] | None = None
    phone = ""
    if raw:
        try:
            phone = normalize_phone(raw)[0]
        except ValueError as exc:
            flash(f"电话号码无法识别：{exc}", "error")
            return render_template("admin/forget.html", raw=raw, e164="", found=None), 400
        found = counts_for(phone)
    if request.method == "POST":
        if not phone:
            flash("请填写居民的电话号码。", "error")
            return render_template("admin/forget.html", raw=raw, e164="", found=None), 400
        db().rollback()  # hold no transaction while the deletion runs in its own
        gone = recordings.forget_resident(_factory(), _store(), phone, by=current_user.name,
                                          ip=request.remote_addr)
        flash(f"已删除 {mask_phone(phone)} 的 {gone.recordings} 段录音、{gone.transcripts} 次通话的"
              f"文字记录和 {gone.answers} 条居民原话。", "ok")
        back = request.form.get("next") or ""
        if back.startswith("/") and not back.startswith("//"):
            return redirect(back)
        return redirect(url_for("recordings.forget", phone=raw))
    return render_template("admin/forget.html", raw=raw, e164=phone, found=found)
