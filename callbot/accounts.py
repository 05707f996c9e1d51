"""Web accounts: users with a role and a committee, hashed passwords, and the audit log.

Passwords are hashed with scrypt from the standard library, so creating a user from the CLI
needs no web extra.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from callbot.db import Base
from callbot.exceptions import CallbotError

ROLES = ("staff", "supervisor", "admin")
"""staff: lists, scripts, campaigns, results of their committee; supervisor: reports, read-only
elsewhere; admin: users and settings."""

ROLE_LABELS = {"staff": "工作人员", "supervisor": "督导", "admin": "管理员"}

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_LEN = 8


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
        check_password_strength(password)
        self.password_hash = hash_password(password)

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


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


def check_password_strength(password: str) -> None:
    """Raise :class:`AccountError` when *password* is too short."""
    if len(password) < MIN_PASSWORD_LEN:
        raise AccountError(f"密码至少 {MIN_PASSWORD_LEN} 位 (password needs {MIN_PASSWORD_LEN}+ characters)")


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
    user.set_password(password)
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
