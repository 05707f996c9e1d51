"""Campaigns: create (list + script + lines + windows + retry policy), start, pause, resume,
cancel; live progress from a JSON endpoint; per-contact results with transcripts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import BooleanField, IntegerField, RadioField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange

from callbot import defaults, labels
from callbot.accounts import mask_phone
from callbot.campaign import service
from callbot.campaign.models import (
    DIALLED,
    Answer,
    Attempt,
    Campaign,
    Contact,
    ContactList,
    Target,
    utcnow,
)
from callbot.campaign.policy import Windows
from callbot.exceptions import CampaignError
from callbot.recordings import Recording
from callbot.reports import URGENT_FIELD
from callbot.script import field_labels
from web.auth import WRITE_ROLES, readable, record, roles_required
from web.scope import claim, hidden_ids, require_visible, visible_scripts
from web.scriptstore import script_choices, script_title
from web.store import db, settings

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")

ACTIONS = {"start": service.start, "pause": service.pause, "resume": service.resume,
           "cancel": service.cancel}
ACTION_LABELS = labels.CAMPAIGN_ACTIONS
PAGE_SIZE = 100
MAX_PAGE = 100_000
"""Pages past this are clamped (an offset the database can hold; no list is that long)."""


class CampaignForm(FlaskForm):
    """The new-campaign form."""

    name = StringField("活动名称", validators=[DataRequired("请填写活动名称"), Length(max=200)])
    list_id = SelectField("联系人名单", coerce=int)
    script = SelectField("话术脚本")
    lines = IntegerField("同时通话线路数", default=defaults.CAMPAIGN_LINES,
                         validators=[NumberRange(1, 1000, "线路数须在 1–1000 之间")])
    windows = StringField("呼叫时段（当地时间）",
                          default=",".join(f"{a}-{b}" for a, b in defaults.CALLING_WINDOWS),
                          validators=[DataRequired("请填写呼叫时段")])
    max_attempts = IntegerField("无人接听/占线时最多拨打次数", default=defaults.MAX_ATTEMPTS,
                                validators=[NumberRange(1, 10, "须在 1–10 之间")])
    retry_minutes = IntegerField("重拨间隔（分钟）", default=defaults.RETRY_DELAY_S // 60,
                                 validators=[NumberRange(0, 24 * 60, "须在 0–1440 之间")])
    daily_cap = IntegerField("每个号码每天最多拨打", default=defaults.DAILY_CAP,
                             validators=[NumberRange(1, 20, "须在 1–20 之间")])
    record_calls = BooleanField("录制整通电话（双方声音，属个人信息）", default=False)
    tts_personal = RadioField("提示语里的个人信息", default="online", choices=[
        ("online", "整句交给语音合成引擎（在线引擎音质更好）"),
        ("offline", "个人信息只在本机合成")])


def _visible_campaigns() -> list[Campaign]:
    hidden = hidden_ids("campaign")
    return [c for c in db().scalars(select(Campaign).order_by(Campaign.id.desc()))
            if str(c.id) not in hidden]


def _campaign(campaign_id: int) -> Campaign:
    require_visible("campaign", campaign_id)
    c = db().get(Campaign, campaign_id)
    if c is None:
        abort(404)
    return c


@bp.route("/")
@readable
def index() -> Any:
    """Every campaign of this committee with its state and progress."""
    camps = _visible_campaigns()
    done = dict(db().execute(
        select(Target.campaign_id, func.count()).where(Target.state == "done")
        .group_by(Target.campaign_id)).all())
    total = dict(db().execute(
        select(Target.campaign_id, func.count()).group_by(Target.campaign_id)).all())
    return render_template("campaigns/index.html", campaigns=camps, done=done, total=total,
                           script_title=script_title)


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*WRITE_ROLES)
def new() -> Any:
    """The create form; a draft campaign is made and shown, ready to start."""
    form = CampaignForm()
    hidden = hidden_ids("list")
    lists = [x for x in db().scalars(select(ContactList).order_by(ContactList.id.desc()))
             if str(x.id) not in hidden]
    form.list_id.choices = [(x.id, f"{x.name}（{x.size} 人）") for x in lists]
    scripts = {s.slug: s for s in visible_scripts()}  # another committee's are not offered
    form.script.choices = script_choices(list(scripts.values()))
    preselect = request.args.get("list_id", "")
    if request.method == "GET" and preselect.isdigit():
        form.list_id.data = int(preselect)
    if form.validate_on_submit():
        retry = {"max_attempts": form.max_attempts.data, "delay_s": form.retry_minutes.data * 60}
        try:
            c = service.create_campaign(
                db(), form.name.data, form.list_id.data, scripts[form.script.data].ref,
                lines=form.lines.data, windows=form.windows.data,
                timezone=settings().timezone, retry_policy=retry, daily_cap=form.daily_cap.data,
                record_calls=bool(form.record_calls.data),
                tts_personal=form.tts_personal.data or "online")
        except CampaignError as exc:
            db().rollback()
            flash(str(exc), "error")
            return render_template("campaigns/new.html", form=form, lists=lists,
                               recording_days=settings().recording_days,
                               tts_engine=settings().tts_engine), 400
        claim("campaign", c.id)
        record("campaign_create", f"campaign:{c.id} {c.name}",
               f"list={form.list_id.data} script={form.script.data} lines={form.lines.data}"
               + (" record_calls" if form.record_calls.data else "")
               + (" tts_personal=offline" if form.tts_personal.data == "offline" else ""))
        db().commit()
        flash(f"已创建活动“{c.name}”（草稿）。检查无误后点“开始”。", "ok")
        return redirect(url_for("campaigns.show", campaign_id=c.id))
    status = 400 if request.method == "POST" else 200
    return render_template("campaigns/new.html", form=form, lists=lists,
                               recording_days=settings().recording_days,
                               tts_engine=settings().tts_engine), status


def progress_of(c: Campaign) -> dict[str, Any]:
    """The live figures the campaign page polls."""
    st = service.status(db(), c.id)
    att = db().execute(
        select(Attempt.state, Attempt.outcome, func.count()).where(Attempt.campaign_id == c.id)
        .group_by(Attempt.state, Attempt.outcome)).all()
    dialled = sum(n for s, _o, n in att if s in DIALLED)
    answered = sum(n for _s, o, n in att if o == "answered")
    lines_busy = sum(n for s, _o, n in att if s == "dialing")
    queued = sum(n for s, _o, n in att if s == "queued")
    waiting_retry = db().scalar(
        select(func.count()).select_from(Target).where(
            Target.campaign_id == c.id, Target.state == "pending", Target.attempts > 0)) or 0
    contacts = st.contacts
    done = st.done
    window_open, next_open = True, None
    try:
        w = Windows.parse(c.windows, c.timezone)
        now = utcnow()
        window_open = w.is_open(now)
        if not window_open:
            from web.labels import local_time

            next_open = local_time(w.next_open(now), c.timezone, "%m-%d %H:%M")
    except CampaignError:
        pass
    return {
        "window_open": window_open, "next_open": next_open,
        "id": c.id, "state": c.state, "state_label": labels.campaign_state(c.state),
        "pause_reason": st.pause_reason,
        "contacts": contacts, "finished": done, "dialled": dialled, "answered": answered,
        "waiting_retry": int(waiting_retry), "lines_busy": lines_busy, "lines": c.lines,
        "queued": queued, "pending": st.targets.get("pending", 0),
        "percent": round(100.0 * done / contacts, 1) if contacts else 0.0,
        "results": {k: v for k, v in st.results.items()},
        "results_labels": {k: labels.result(k) for k in st.results},
    }


@bp.route("/<int:campaign_id>")
@readable
def show(campaign_id: int) -> Any:
    """Settings, actions, live progress, and the per-contact results."""
    c = _campaign(campaign_id)
    page = min(max(1, request.args.get("page", 1, type=int)), MAX_PAGE)
    rows, total = contact_rows(c, page=page, per_page=PAGE_SIZE,
                               result=request.args.get("result") or None,
                               q=request.args.get("q") or None,
                               whole_numbers=current_user.role in WRITE_ROLES)
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return render_template("campaigns/show.html", c=c, p=progress_of(c), rows=rows, page=page,
                           pages=pages, total=total, script_title=script_title,
                           fl=field_labels(c.script),
                           result_filter=request.args.get("result", ""),
                           q=request.args.get("q", ""))


def contact_rows(c: Campaign, *, page: int = 1, per_page: int = PAGE_SIZE,
                 result: str | None = None, q: str | None = None,
                 whole_numbers: bool = False) -> tuple[list[dict], int]:
    """One row per contact of the campaign: state, result, attempts, last outcome, answers.
    *q* matches name, address or phone; the phone as the user may see it: whole for
    *whole_numbers*, else only its masked form (``138****8000``), so a supervisor cannot recover
    the hidden digits by guessing them."""
    base = select(Target, Contact).join(Contact, Contact.id == Target.contact_id).where(
        Target.campaign_id == c.id)
    if result:
        base = base.where(Target.result == result) if result != "open" else base.where(
            Target.state != "done")
    if q:
        like = f"%{q}%"
        if whole_numbers:
            phone_match = Contact.phone.like(like)
        else:
            ids = [cid for cid, phone in db().execute(
                select(Contact.id, Contact.phone).join(Target, Target.contact_id == Contact.id)
                .where(Target.campaign_id == c.id)) if q in mask_phone(phone)]
            phone_match = Contact.id.in_(ids)
        base = base.where(Contact.name.like(like) | Contact.address.like(like) | phone_match)
    total = db().scalar(select(func.count()).select_from(base.subquery())) or 0
    pairs = db().execute(base.order_by(Contact.row).offset((page - 1) * per_page)
                         .limit(per_page)).all()
    ids = [ct.id for _t, ct in pairs]
    answers: dict[int, dict[str, Any]] = {}
    if ids:
        for a in db().scalars(select(Answer).where(Answer.campaign_id == c.id,
                                                   Answer.contact_id.in_(ids))
                              .order_by(Answer.id)):
            answers.setdefault(a.contact_id, {})[a.field] = a.value
    for row in answers.values():  # an emergency first (reports.URGENT_FIELD)
        if URGENT_FIELD in row:
            items = [(URGENT_FIELD, row.pop(URGENT_FIELD)), *row.items()]
            row.clear()
            row.update(items)
    return [{"target": t, "contact": ct, "answers": answers.get(ct.id, {})}
            for t, ct in pairs], int(total)


@bp.route("/<int:campaign_id>/progress.json")
@readable
def progress(campaign_id: int) -> Any:
    """Live progress for the page's poller."""
    return jsonify(progress_of(_campaign(campaign_id)))


@bp.route("/<int:campaign_id>/<action>", methods=["POST"])
@roles_required(*WRITE_ROLES)
def act(campaign_id: int, action: str) -> Any:
    """Start, pause, resume or cancel; audited."""
    if action not in ACTIONS:
        abort(404)
    c = _campaign(campaign_id)
    try:
        ACTIONS[action](db(), c.id)
    except CampaignError as exc:
        db().rollback()
        flash(str(exc), "error")
        return redirect(url_for("campaigns.show", campaign_id=c.id))
    record(f"campaign_{action}", f"campaign:{c.id} {c.name}")
    db().commit()
    flash(f"活动“{c.name}”已{ACTION_LABELS[action]}。", "ok")
    return redirect(url_for("campaigns.show", campaign_id=c.id))


@bp.route("/<int:campaign_id>/contacts/<int:contact_id>")
@readable
def contact(campaign_id: int, contact_id: int) -> Any:
    """Every attempt to one contact with its transcript and the answers recorded."""
    c = _campaign(campaign_id)
    target = db().scalar(select(Target).where(Target.campaign_id == c.id,
                                              Target.contact_id == contact_id))
    if target is None:
        abort(404)
    attempts = db().scalars(select(Attempt).where(Attempt.target_id == target.id)
                            .order_by(Attempt.number, Attempt.id)).all()
    answers = sorted(db().scalars(select(Answer).where(Answer.campaign_id == c.id,
                                                       Answer.contact_id == contact_id)
                                  .order_by(Answer.id)).all(),
                     key=lambda a: a.field != URGENT_FIELD)  # an emergency is read first
    recs = db().scalars(select(Recording).where(Recording.campaign_id == c.id,
                                                Recording.contact_id == contact_id)
                        .order_by(Recording.id)).all()
    by_id = {r.id: r for r in recs}
    replies = {(r.attempt_id, r.line): r for r in recs if r.kind == "reply"}
    calls = {r.attempt_id: r for r in recs if r.kind == "call"}
    from callbot.alerts import Alert

    raised = db().scalars(select(Alert).where(Alert.campaign_id == c.id,
                                              Alert.contact_id == contact_id)
                          .order_by(Alert.id.desc())).all()
    return render_template("campaigns/contact.html", c=c, t=target, ct=target.contact,
                           attempts=attempts, answers=answers, fl=field_labels(c.script),
                           rec_by_id=by_id, reply_recs=replies, call_recs=calls,
                           loose_replies=[r for r in recs if r.kind == "reply" and r.line is None],
                           raised=raised)
