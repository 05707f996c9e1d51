"""Login, logout, roles and the login rate limit."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import CSRFProtect, FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from callbot.accounts import (
    AccountError,
    User,
    audit,
    change_password,
    close_session,
    mask_phone,
    open_session,
    session_user,
)
from web.store import db

bp = Blueprint("auth", __name__)
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "请先登录。"
login_manager.login_message_category = "info"
login_manager.session_protection = "strong"

WRITE_ROLES = ("staff", "admin")
"""Who may change lists, scripts and campaigns; supervisors only read."""


class LoginLimiter:
    """Failed logins per client address and per user name in a sliding window."""

    def __init__(self) -> None:
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, window: float, now: float) -> deque[float]:
        q = self._fails[key]
        while q and q[0] < now - window:
            q.popleft()
        return q

    def blocked_for(self, limits: dict[str, int], window: float) -> float:
        """Seconds until every key is under its limit again (0 when allowed)."""
        now = time.monotonic()
        with self._lock:
            wait = 0.0
            for key, limit in limits.items():
                q = self._recent(key, window, now)
                if len(q) >= limit:
                    wait = max(wait, q[-limit] + window - now)
            return wait

    def fail(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._fails[key].append(now)

    def clear(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._fails.pop(key, None)


class LoginForm(FlaskForm):
    name = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=64)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=256)])


def init_app(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["callbot_login_limiter"] = LoginLimiter()

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {"phone": shown_phone, "can_write": can_write}


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    """The user of this request, only while its server-side session lives (the cookie alone is
    not enough: logout, a password change or reset and disabling the account end it)."""
    factory = current_app.extensions["callbot_sessionmaker"]
    with factory() as s:  # its own transaction: it may delete or touch the session row
        uid = session_user(s, session.get("sid"), current_app.permanent_session_lifetime)
    if uid is None or str(uid) != user_id:
        return None
    user = db().get(User, uid)
    return user if user is not None and user.active else None


def roles_required(*roles: str) -> Callable:
    """Logged-in users whose role is in *roles*; others get 403."""

    def deco(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403, "您的角色无权访问此页面。")
            return view(*args, **kwargs)

        return wrapped

    return deco


def can_write() -> bool:
    return bool(current_user.is_authenticated and current_user.role in WRITE_ROLES)


def readable(view: Callable) -> Callable:
    """Every role may read; POST needs a writing role (supervisors are read-only)."""

    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if request.method not in ("GET", "HEAD") and not can_write():
            abort(403, "督导账号只读，不能修改。")
        return view(*args, **kwargs)

    return wrapped


def shown_phone(number: str | None, whole: bool = False) -> str:
    """The number as this user may see it: whole only where the page needs it and the role may."""
    if whole and current_user.is_authenticated and current_user.role in WRITE_ROLES:
        return number or ""
    return mask_phone(number)


def record(action: str, target: str | None = None, detail: str | None = None) -> None:
    """Audit one action of the current user (committed with the request's session)."""
    name = current_user.name if current_user.is_authenticated else "-"
    audit(db(), name, action, target, detail, ip=request.remote_addr)


def _safe_next(target: str | None) -> str:
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("main.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Log in; repeated failures from one address or for one name are refused for a while."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        name = form.name.data.strip()
        limiter: LoginLimiter = current_app.extensions["callbot_login_limiter"]
        keys = [f"ip:{request.remote_addr}", f"user:{name.lower()}"]
        limit = int(current_app.config["LOGIN_MAX_FAILURES"])
        window = float(current_app.config["LOGIN_WINDOW_S"])
        # one name: LOGIN_MAX_FAILURES; one address (an office behind NAT): four times that
        wait = limiter.blocked_for({keys[0]: 4 * limit, keys[1]: limit}, window)
        if wait > 0:
            flash(f"登录失败次数过多，请 {int(wait // 60) + 1} 分钟后再试。", "error")
            status = 429
        else:
            user = db().scalar(select(User).where(User.name == name))
            if user is not None and user.active and user.check_password(form.password.data):
                limiter.clear([f"user:{name.lower()}"])
                session.clear()
                session["sid"] = open_session(db(), user, request.remote_addr)
                login_user(user)
                session.permanent = True
                user.last_login_at = datetime.now(UTC)
                audit(db(), user.name, "login", ip=request.remote_addr)
                db().commit()
                return redirect(_safe_next(request.args.get("next")))
            limiter.fail(keys)
            flash("用户名或密码错误。", "error")
            status = 401
    return render_template("login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    """End the session on the server too: a copy of the cookie no longer works."""
    close_session(db(), session.get("sid"))
    db().commit()
    logout_user()
    session.clear()
    flash("已退出登录。", "info")
    return redirect(url_for("auth.login"))


class PasswordForm(FlaskForm):
    current = PasswordField("当前密码", validators=[DataRequired("请输入当前密码"), Length(max=256)])
    new = PasswordField("新密码", validators=[DataRequired("请输入新密码"), Length(max=256)])
    confirm = PasswordField("再输入一次新密码", validators=[DataRequired("请再输入一次新密码")])


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> Any:
    """Change one's own password; every other session of the account ends (this one stays)."""
    form = PasswordForm()
    error = None
    if form.validate_on_submit():
        user = db().get(User, current_user.id)
        if user is None:
            abort(404)
        if not user.check_password(form.current.data):
            error = "当前密码不正确。"
            audit(db(), user.name, "password_change_failed", ip=request.remote_addr)
            db().commit()
        elif form.new.data != form.confirm.data:
            error = "两次输入的新密码不一致。"
        else:
            try:
                change_password(db(), user, form.new.data, keep=session.get("sid"))
            except AccountError as exc:
                error = str(exc)
            else:
                audit(db(), user.name, "password_change", ip=request.remote_addr)
                db().commit()
                flash("密码已修改；其他电脑上的登录已退出。", "ok")
                return redirect(url_for("main.index"))
    elif request.method == "POST":
        error = "；".join(e for f in form for e in f.errors) or "请填写完整。"
    return render_template("account/password.html", form=form, error=error), 400 if error else 200
