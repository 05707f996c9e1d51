"""The home page: what is running and where to go next."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_login import login_required
from sqlalchemy import func, select

from callbot.campaign.models import Campaign, ContactList
from web.scope import UNASSIGNED_MESSAGE, hidden_ids, unassigned
from web.scriptstore import script_title
from web.store import db

bp = Blueprint("main", __name__)


@bp.route("/")
@login_required
def index() -> Any:
    """Counts and the most recent campaigns."""
    if unassigned():
        return render_template("index.html", campaigns=[], n_lists=0, running=0,
                               script_title=script_title, unassigned=UNASSIGNED_MESSAGE)
    hidden = hidden_ids("campaign")
    camps = [c for c in db().scalars(select(Campaign).order_by(Campaign.id.desc()).limit(30))
             if str(c.id) not in hidden][:8]
    hidden_lists = hidden_ids("list")
    n_lists = sum(1 for i in db().scalars(select(ContactList.id)) if str(i) not in hidden_lists)
    running = db().scalar(select(func.count()).select_from(Campaign)
                          .where(Campaign.state == "running")) or 0
    return render_template("index.html", campaigns=camps, n_lists=n_lists, running=running,
                           script_title=script_title)
