"""Committee scoping: staff see the lists, scripts and campaigns of their own committee."""

from __future__ import annotations

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


def visible(kind: str, object_id: object) -> bool:
    return str(object_id) not in hidden_ids(kind)


def require_visible(kind: str, object_id: object) -> None:
    """404 (not 403: do not reveal that it exists) for another committee's object."""
    if not visible(kind, object_id):
        abort(404)


def claim(kind: str, object_id: object) -> None:
    """Record that the current user's committee owns a new object."""
    db().add(Ownership(kind=kind, object_id=str(object_id),
                       committee=current_user.committee, created_by=current_user.name))
