"""The template filters that show status words, answers, times and percentages. The words
themselves live in :mod:`callbot.labels` (one table per kind of status, shared with the CLI,
the exports and the alert texts); this module only hands them to Jinja."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Flask

from callbot import labels

FILTERS = {
    "campaign_state": labels.campaign_state, "attempt_state": labels.attempt_state,
    "outcome": labels.outcome, "target_state": labels.target_state, "result": labels.result,
    "ended": labels.ended, "follow_up_reason": labels.follow_up_reason,
    "follow_up_state": labels.follow_up_state, "answer": labels.answer,
    "welfare": labels.welfare, "contact_field": labels.contact_field,
}
"""Jinja filter name → label function (``{{ t.result|result }}``)."""


def local_time(value: datetime | None, tz: str = "Asia/Shanghai", fmt: str = "%m-%d %H:%M") -> str:
    """A naive-UTC or aware timestamp shown in the committee's time zone."""
    if value is None:
        return labels.EMPTY
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def pct(value: float | None) -> str:
    """A rate (0.25) as a percentage (25.0%)."""
    return labels.EMPTY if value is None else f"{value * 100:.1f}%"


def init_app(app: Flask) -> None:
    """Register the filters on *app*'s Jinja environment."""
    tz = app.extensions["callbot_settings"].timezone
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.filters["pct"] = pct
    app.jinja_env.filters["localtime"] = lambda v, fmt="%m-%d %H:%M": local_time(v, tz, fmt)
