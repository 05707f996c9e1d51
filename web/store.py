"""The web app's handle on the SQL store: one engine per app, one session per request."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from callbot.config import Settings
from callbot.db import make_engine, make_sessionmaker


def init_store(app: Flask, settings: Settings) -> None:
    """Create the engine and make sure the schema exists (migrations when available)."""
    url = app.config.get("DATABASE_URL") or settings.database_url
    engine = make_engine(url)
    ensure_schema(engine)
    app.extensions["callbot_engine"] = engine
    app.extensions["callbot_sessionmaker"] = make_sessionmaker(engine)


def ensure_schema(engine) -> None:  # type: ignore[no-untyped-def]
    """Bring the schema to the newest Alembic revision (the campaigns' migrations hold every
    table, the web's included); a fresh database is created."""
    from callbot.campaign.store import upgrade

    upgrade(engine)


def db() -> Session:
    """The request's SQL session (closed at teardown)."""
    if "db" not in g:
        g.db = current_app.extensions["callbot_sessionmaker"]()
    return g.db


def settings() -> Settings:
    """The app's Settings."""
    return current_app.extensions["callbot_settings"]
