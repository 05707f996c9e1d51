"""Committee scoping: staff see the lists, scripts and campaigns of their own committee."""

from __future__ import annotations

from typing import Any

from flask import abort
from flask_login import current_user
from sqlalchemy import select

from callbot.accounts import Ownership
from web.store import db


def hidden_ids(kind: str) -> set[str]:
    """Object ids of *kind* the current user may not see (another committee's)."""
    if current_user.role != "staff" or not current_user.committee:
        return set()
    rows = db().scalars(
        select(Ownership.object_id).where(
            Ownership.kind == kind,
            Ownership.committee.is_not(None),
            Ownership.committee != current_user.committee,
        )
    )
    return set(rows)


def visible_scripts() -> list[Any]:
    """Built-ins and the uploaded scripts the current user may see and use."""
    from web import scriptstore

    hidden = hidden_ids("script")
    return [s for s in scriptstore.all_scripts() if s.builtin or s.slug not in hidden]


def unassigned() -> bool:
    """A staff account that belongs to no committee: it sees nothing but its own account pages
    (another committee's data must not leak to it; an admin assigns the committee)."""
    return bool(current_user.is_authenticated and current_user.role == "staff"
                and not current_user.committee)


UNASSIGNED_MESSAGE = "您的账号还没有分配居委会，暂时看不到任何名单、话术和活动。请联系管理员在“系统管理”里设置所属居委会。"
_OWN_ACCOUNT = {"static", "auth.login", "auth.logout", "auth.password", "main.index"}


def refuse_unassigned() -> None:
    """before_request: a staff account without a committee gets 403 everywhere but its own
    account pages and the home page (which says why)."""
    from flask import request

    if request.endpoint not in _OWN_ACCOUNT and unassigned():
        abort(403, UNASSIGNED_MESSAGE)


def visible(kind: str, object_id: object) -> bool:
    """Whether the current user's committee may see this object."""
    return str(object_id) not in hidden_ids(kind)


def require_visible(kind: str, object_id: object) -> None:
    """404 (not 403: do not reveal that it exists) for another committee's object."""
    if not visible(kind, object_id):
        abort(404)


def claim(kind: str, object_id: object) -> None:
    """Record that the current user's committee owns a new object."""
    db().add(Ownership(kind=kind, object_id=str(object_id),
                       committee=current_user.committee, created_by=current_user.name))
