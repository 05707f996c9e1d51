"""Login, logout, roles and the login rate limit."""

from __future__ import annotations

import secrets
import time
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
    hash_password,
    mask_phone,
    open_session,
    session_user,
    verify_password,
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
    """Back-off after failed logins, per account *and* client address.

    The first ``free`` failures of a (name, address) pair cost nothing; after that each try must
    wait ``base`` seconds, doubling with every further failure up to ``cap``. A wrong guess never
    locks the account: its owner logs in from another address at once, and from the attacker's
    address after the wait. Colleagues behind the same NAT or proxy are not slowed by one another.
    A pair forgets its failures ``forget`` seconds after the last one, and on a success.

    The counts live in the database (``login_failures``), so every web process and host sees the
    same ones: a guesser gets no more tries by landing on another process. Each call is its own
    short transaction on *factory*; a failure is counted by one UPDATE (``failures + 1``), so two
    processes counting at once lose neither.
    """

    def __init__(self, factory: Callable[[], Any], free: int = 5, base: float = 30.0,
                 cap: float = 900.0, forget: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.factory = factory
        self.free, self.base, self.cap, self.forget = free, base, cap, forget
        self.clock = clock

    @staticmethod
    def key(name: str, address: str | None) -> str:
        return f"{name.strip().lower()[:64]}|{(address or '-')[:64]}"

    def delay(self, failures: int) -> float:
        """Seconds a pair with *failures* must wait after its last failure."""
        if failures < self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** (failures - self.free)))

    def wait_for(self, key: str) -> float:
        """Seconds until *key* may try again (0 when it may now)."""
        from callbot.accounts import LoginFailure

        now = self.clock()
        with self.factory() as s:
            row = s.get(LoginFailure, key)
            if row is None or now - row.last_at > self.forget:
                return 0.0
            return max(0.0, row.last_at + self.delay(row.failures) - now)

    def fail(self, key: str) -> None:
        """Count one more failure of *key* (a pair forgotten meanwhile starts again at 1); rows
        forgotten by now are deleted, so a spray of made-up names cannot fill the table."""
        from sqlalchemy import case, delete, update
        from sqlalchemy.exc import IntegrityError

        from callbot.accounts import LoginFailure

        now = self.clock()
        cutoff = now - self.forget
        bump = (update(LoginFailure).where(LoginFailure.key == key).values(
            failures=case((LoginFailure.last_at < cutoff, 1), else_=LoginFailure.failures + 1),
            last_at=now))
        with self.factory() as s:
            if s.execute(bump).rowcount == 0:  # type: ignore[attr-defined]
                s.add(LoginFailure(key=key, failures=1, last_at=now))
                try:
                    s.commit()
                except IntegrityError:  # another process counted its first failure just now
                    s.rollback()
                    s.execute(bump)
            s.execute(delete(LoginFailure).where(LoginFailure.last_at < cutoff))
            s.commit()

    def clear(self, key: str) -> None:
        from sqlalchemy import delete

        from callbot.accounts import LoginFailure

        with self.factory() as s:
            s.execute(delete(LoginFailure).where(LoginFailure.key == key))
            s.commit()


class LoginForm(FlaskForm):
    """The login form."""

    name = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=64)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=256)])


def init_app(app: Flask) -> None:
    """Set up logins, sessions and the auth routes on *app*."""
    csrf.init_app(app)
    login_manager.init_app(app)
    app.extensions["callbot_login_limiter"] = LoginLimiter(
        app.extensions["callbot_sessionmaker"], free=int(app.config["LOGIN_FREE_FAILURES"]), base=float(app.config["LOGIN_BACKOFF_S"]),
        cap=float(app.config["LOGIN_BACKOFF_MAX_S"]))

    from web.scope import refuse_unassigned

    app.before_request(refuse_unassigned)

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
    """Whether the current user may change lists, scripts and campaigns."""
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
    """Log in. After repeated failures for one name from one address that pair must wait
    (growing back-off); every failure is audited. An unknown name costs the same password hash
    as a known one, so timing does not tell which names exist."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        name = form.name.data.strip()
        limiter: LoginLimiter = current_app.extensions["callbot_login_limiter"]
        key = limiter.key(name, request.remote_addr)
        wait = limiter.wait_for(key)
        if wait > 0:
            shown = f"{int(wait) + 1} 秒" if wait < 60 else f"{int(wait // 60) + 1} 分钟"
            flash(f"登录失败次数过多，请 {shown}后再试（换一台电脑登录不受影响）。", "error")
            status = 429
        else:
            user = db().scalar(select(User).where(User.name == name))
            if user is not None:
                ok = user.check_password(form.password.data)
            else:
                verify_password(_dummy_hash(), form.password.data)  # the same work as a real one
                ok = False
            if ok and user is not None and user.active:
                limiter.clear(key)
                session.clear()
                session["sid"] = open_session(db(), user, request.remote_addr)
                login_user(user)
                session.permanent = True
                user.last_login_at = datetime.now(UTC)
                audit(db(), user.name, "login", ip=request.remote_addr)
                db().commit()
                return redirect(_safe_next(request.args.get("next")))
            limiter.fail(key)
            why = "unknown user" if user is None else ("disabled" if ok else "wrong password")
            audit(db(), name[:64], "login_failed", detail=why, ip=request.remote_addr)
            db().commit()
            flash("用户名或密码错误。", "error")
            status = 401
    return render_template("login.html", form=form), status


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash of a random password, made once: what an unknown name's password is checked against."""
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_hex(16)))
    return _DUMMY[0]


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
    """The form that changes one's own password."""

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
