"""Web accounts: users with a role and a committee, hashed passwords, and the audit log.

Passwords are hashed with scrypt from the standard library, so creating a user from the CLI
needs no web extra.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from callbot.db import Base
from callbot.exceptions import CallbotError

ROLES = ("staff", "supervisor", "admin")
"""staff: lists, scripts, campaigns, results of their committee; supervisor: reports, read-only
elsewhere; admin: users and settings."""

ROLE_LABELS = {"staff": "工作人员", "supervisor": "督导", "admin": "管理员"}

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LEN = 10
COMMON_PASSWORDS = frozenset("""
1234567890 0123456789 9876543210 12345678910 123456789a a123456789 a1234567890 abc1234567
abcd123456 qwertyuiop qwerty1234 qwerty12345 qwerty123456 1qaz2wsx3edc 1q2w3e4r5t 1q2w3e4r5t6y
q1w2e3r4t5 zxcvbnm123 asdfghjkl1 password12 password123 password1234 password1! passw0rd123
p@ssw0rd123 iloveyou12 iloveyou123 woaini1314 woaini520 woaini5201314 5201314520 1314520520
aa123456789 qq123456789 admin12345 admin123456 administrator letmein123 welcome123 changeme123
11223344556 1122334455 1234512345 1234554321 123123123123 123456123456 147258369 1472583690
""".split())
"""Passwords refused though long enough: the commonest ones of 10+ characters (global and Chinese
lists). Runs of one character, plain sequences and the user's own name are refused by rule."""


class AccountError(CallbotError):
    """A user cannot be created or changed (duplicate name, bad role, weak password)."""


def _now() -> datetime:
    return datetime.now(UTC)


def hash_password(password: str) -> str:
    """Return ``scrypt$N$r$p$salt$hash`` for *password*."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    """True when *password* matches the *stored* hash (constant-time compare)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt),
            n=int(n), r=int(r), p=int(p), dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class User(Base):
    """A person who logs into the web app."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="staff")
    committee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    active: Mapped[bool] = mapped_column(default=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # Flask-Login protocol, without importing Flask here.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    def check_password(self, password: str) -> bool:
        return verify_password(self.password_hash, password)

    def set_password(self, password: str) -> None:
        check_password_strength(password, self.name)
        self.password_hash = hash_password(password)

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


class WebSession(Base):
    """One login to the web app, kept on the server: the browser's cookie holds a random token,
    this row its SHA-256. Deleting the row ends the session wherever the cookie was copied to
    (logout, a password change or reset, disabling the account)."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """SHA-256 (hex) of the cookie's token; the token itself is never stored."""
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         nullable=False, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class LoginFailure(Base):
    """Failed logins of one account name from one client address (the web's login back-off).
    In the database, so every web process (and host) counts the same failures."""

    __tablename__ = "login_failures"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    """``name|address``: the name lower-cased, as typed (unknown names too)."""
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    """The last failure, seconds since the epoch (compared across processes and hosts)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _aware(at: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def open_session(session: Session, user: User, ip: str | None = None) -> str:
    """Start a server-side session for *user*; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=_digest(token), user_id=user.id, ip=(ip or "")[:64] or None))
    return token


def session_user(session: Session, token: str | None, lifetime: timedelta) -> int | None:
    """The id of the active user whose live session *token* is, or None (unknown, ended,
    expired, disabled). Commits *session* (give it one of its own): an expired row is deleted,
    ``last_seen_at`` refreshed once a minute."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    row = session.get(WebSession, _digest(token))
    if row is None:
        return None
    now = _now()
    if _aware(row.created_at) + lifetime < now:
        session.delete(row)
        session.commit()
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    if now - _aware(row.last_seen_at) > timedelta(minutes=1):
        row.last_seen_at = now
        session.commit()
    return user.id


def close_session(session: Session, token: str | None) -> None:
    """End one session (logout)."""
    if token and isinstance(token, str):
        session.execute(delete(WebSession).where(WebSession.id == _digest(token)))


def revoke_sessions(session: Session, user_id: int, keep: str | None = None) -> None:
    """End every session of a user, except the one whose token is *keep*."""
    q = delete(WebSession).where(WebSession.user_id == user_id)
    if keep:
        q = q.where(WebSession.id != _digest(keep))
    session.execute(q)


def change_password(session: Session, user: User, password: str, keep: str | None = None) -> None:
    """Set a new password and end the user's other sessions (all of them unless *keep*)."""
    user.set_password(password)
    if user.id is not None:
        revoke_sessions(session, user.id, keep=keep)


def set_active(session: Session, user: User, active: bool) -> None:
    """Enable or disable an account; disabling ends its sessions. The last active admin cannot
    be disabled (nobody could administer the web app any more)."""
    if not active and user.active and user.role == "admin" and _other_admins(session, user) == 0:
        raise AccountError("不能停用最后一个启用的管理员账号 (the last active admin cannot be "
                           "disabled)")
    user.active = active
    if not active:
        revoke_sessions(session, user.id)


def _other_admins(session: Session, user: User) -> int:
    from sqlalchemy import func

    return int(session.scalar(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id)) or 0)


class AuditLog(Base):
    """Who did what and when: exports, campaign actions, imports, user changes."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    user_name: Mapped[str] = mapped_column(String(64), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Ownership(Base):
    """Which committee a list, script or campaign made in the web app belongs to.

    Objects without a row (made with the CLI or the demo) are visible to every committee.
    """

    __tablename__ = "web_ownership"
    __table_args__ = (UniqueConstraint("kind", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    """list, campaign or script."""
    object_id: Mapped[str] = mapped_column(String(200), nullable=False)
    committee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def _sequence(text: str) -> bool:
    """True for 0123456789-like runs (up or down) and a character repeated."""
    steps = {ord(b) - ord(a) for a, b in zip(text, text[1:], strict=False)}
    return len(steps) == 1 and steps <= {-1, 0, 1}


def check_password_strength(password: str, name: str | None = None) -> None:
    """Raise :class:`AccountError` when *password* is too short, common, a plain sequence or
    little more than the user's name."""
    if len(password) < MIN_PASSWORD_LEN:
        raise AccountError(f"密码至少 {MIN_PASSWORD_LEN} 位 (password needs {MIN_PASSWORD_LEN}+ characters)")
    low = password.lower()
    rest = low.replace(name.strip().lower(), "") if name and name.strip() else low
    if low in COMMON_PASSWORDS or _sequence(low) or len(rest) < 6:  # little more than the name
        raise AccountError("密码太常见或太简单（如 1234567890、password123、重复的字符或含用户名），"
                           "请换一个不易猜到的密码 (password too common)")


def create_user(
    session: Session, name: str, password: str, role: str = "staff", committee: str | None = None
) -> User:
    """Add a user; raises :class:`AccountError` on a bad role, weak password or taken name."""
    name = name.strip()
    if not name:
        raise AccountError("用户名不能为空 (name is empty)")
    if role not in ROLES:
        raise AccountError(f"未知角色 {role!r}，可选: {', '.join(ROLES)}")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise AccountError(f"用户 {name!r} 已存在 (user exists)")
    user = User(name=name, role=role, committee=committee or None)
    user.set_password(password)
    session.add(user)
    session.flush()
    return user


def ensure_user(
    session: Session, name: str, password: str, role: str = "staff", committee: str | None = None
) -> User:
    """Create the user, or reset its password, role and committee (for demos and set-up scripts)."""
    user = session.scalar(select(User).where(User.name == name.strip()))
    if user is None:
        return create_user(session, name, password, role, committee)
    if role not in ROLES:
        raise AccountError(f"未知角色 {role!r}，可选: {', '.join(ROLES)}")
    change_password(session, user, password)
    user.role, user.committee, user.active = role, committee or None, True
    session.flush()
    return user


def audit(
    session: Session, user_name: str, action: str, target: str | None = None,
    detail: str | None = None, ip: str | None = None,
) -> AuditLog:
    """Append one audit entry (the caller commits)."""
    entry = AuditLog(user_name=user_name, action=action, target=target, detail=detail, ip=ip)
    session.add(entry)
    return entry


def mask_phone(number: str | None) -> str:
    """138****8000: keep the first 3 and last 4 digits of a number, star the middle."""
    if not number:
        return ""
    s = str(number)
    if s.startswith("+86"):
        s = s[3:]
    digits = [i for i, ch in enumerate(s) if ch.isdigit()]
    if len(digits) <= 7:
        keep = set(digits[:1] + digits[-2:])
    else:
        keep = set(digits[:3] + digits[-4:])
    return "".join(ch if (not ch.isdigit() or i in keep) else "*" for i, ch in enumerate(s))


DEMO_LOGINS = ("demo", "supervisor")
"""The accounts ``callbot demo`` makes, with a password printed in the docs."""
DEMO_MARKER = "demo-data-dir"
"""A file in a data dir the demo made its own; only there may it create its logins."""


def demo_logins_refused(session: Session, data_dir: Path, database_url: str) -> str | None:
    """Why ``callbot demo`` must not create or re-enable its published-password logins here, or
    None when the data dir is the demo's own: it uses the dir's own SQLite file and either has no
    user yet or was marked by the demo and still holds only the demo's logins. A data dir with any
    other account (a production one) or an external database is never touched."""
    own_db = f"sqlite:///{data_dir / 'callbot.db'}"
    if database_url != own_db:
        return "配置了外部数据库 (DATABASE_URL)"
    names = set(session.scalars(select(User.name)))
    if not names:
        return None
    if (data_dir / DEMO_MARKER).is_file() and names <= set(DEMO_LOGINS):
        return None
    return "数据目录里已有正式账号"


def mark_demo_dir(data_dir: Path) -> None:
    """Mark *data_dir* as the demo's own (its logins have a published password)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text("callbot demo made this data dir its own; its logins "
                                        "(demo, supervisor) have a published password.\n", "utf-8")


def retire_demo_logins(session: Session, data_dir: Path) -> list[str]:
    """A real account is being added to a demo data dir: disable the demo's logins (their
    password is public) and drop the mark. Returns the names disabled."""
    marker = data_dir / DEMO_MARKER
    if not marker.is_file():
        return []
    done = []
    for user in session.scalars(select(User).where(User.name.in_(DEMO_LOGINS))):
        if user.active:
            user.active = False
            revoke_sessions(session, user.id)
            done.append(user.name)
    marker.unlink()
    return done
