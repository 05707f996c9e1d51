"""A committee's own settings: where its alerts go (group-robot webhook), whether alerts show
whole phone numbers, and the duty phone a resident who asks for a person is put through to.

Committees are the names staff users carry (``users.committee``); a campaign belongs to the
committee of the user who made it in the web app (``web_ownership``), and one made with the CLI or
the demo to the installation's own committee (``CALLBOT_COMMITTEE``). Unset per-committee values
fall back to the environment: ``CALLBOT_ALERT_WEBHOOK``, ``CALLBOT_DUTY_NUMBER``,
``CALLBOT_TRANSFER_TIMEOUT``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from callbot import defaults
from callbot.config import Settings
from callbot.db import Base


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class CommitteeSettings(Base):
    """Per-committee alert and transfer settings, edited by an admin on the web settings page."""

    __tablename__ = "committee_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The group robot's webhook (企业微信 or 钉钉); its key is a secret: shown masked."""
    full_phone: Mapped[bool] = mapped_column(Boolean, default=False)
    """Alerts show whole phone numbers (the committee opted in); masked otherwise."""
    duty_number: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """Duty phone for 转人工: a number dialled through sip.conf's dial plan, or a SIP URI."""
    transfer_timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, onupdate=_utcnow)
    updated_by: Mapped[str] = mapped_column(String(64), default="")


@dataclass(frozen=True)
class CommitteeConfig:
    """The settings that apply to one committee (its row, else the environment's defaults)."""

    name: str
    webhook_url: str | None
    full_phone: bool
    duty_number: str | None
    transfer_timeout_s: float


def committee_of_campaign(s: Session, campaign_id: int) -> str | None:
    """The committee that owns a campaign made in the web app; None for CLI / demo campaigns."""
    from callbot.accounts import Ownership

    return s.scalar(select(Ownership.committee).where(
        Ownership.kind == "campaign", Ownership.object_id == str(campaign_id)))


def config_for(s: Session, committee: str | None, settings: Settings) -> CommitteeConfig:
    """Settings of *committee* (None: the installation's own, ``CALLBOT_COMMITTEE``)."""
    name = committee or settings.committee
    row = s.scalar(select(CommitteeSettings).where(CommitteeSettings.name == name))
    env = settings.extra
    timeout = (row.transfer_timeout_s if row is not None and row.transfer_timeout_s else None) \
        or _float(env.get("transfer_timeout")) or defaults.TRANSFER_TIMEOUT_S
    return CommitteeConfig(
        name=name,
        webhook_url=(row.webhook_url if row is not None and row.webhook_url else None)
        or env.get("alert_webhook") or None,
        full_phone=bool(row.full_phone) if row is not None else False,
        duty_number=(row.duty_number if row is not None and row.duty_number else None)
        or env.get("duty_number") or None,
        transfer_timeout_s=timeout,
    )


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None


def check_webhook_url(url: str) -> str:
    """The URL stripped, or ValueError (Chinese first) when it is not an http(s) URL."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("群机器人地址须以 http:// 或 https:// 开头，例如企业微信的 "
                         "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… "
                         "(webhook must be an http(s) URL)")
    return url


_NUMBER_RE = re.compile(r"^\+?[0-9]{3,20}$")


def check_duty_number(value: str) -> str:
    """A duty phone as stored: a SIP URI (``sip:`` / ``sips:``) or digits (spaces and dashes
    dropped); ValueError (Chinese first) otherwise."""
    v = value.strip()
    if v.lower().startswith(("sip:", "sips:")):
        if "@" not in v or any(c.isspace() for c in v):
            raise ValueError(f"SIP 地址应写成 sip:用户@主机，例如 sip:8001@pbx.example.com，不是 {v!r} "
                             "(bad SIP URI)")
        return v
    digits = re.sub(r"[\s\-()（）]", "", v)
    if not _NUMBER_RE.match(digits):
        raise ValueError(f"值班电话应为电话号码（如 13800138000、02161234567）或 SIP 地址，不是 {v!r} "
                         "(duty number must be digits or a SIP URI)")
    return digits


def check_timeout(value: str) -> float | None:
    """Transfer ring timeout in seconds (5–120), None when empty; ValueError otherwise."""
    v = value.strip()
    if not v:
        return None
    try:
        t = float(v)
    except ValueError:
        raise ValueError(f"转接等待时间须是秒数，不是 {v!r} (timeout must be seconds)") from None
    if not 5 <= t <= 120:
        raise ValueError("转接等待时间须在 5 到 120 秒之间 (timeout must be 5–120 s)")
    return t


def masked_webhook(url: str | None) -> str:
    """The webhook with its key hidden (…key=••••ab12), for pages and logs."""
    if not url:
        return ""
    parts = urlsplit(url)
    tail = url[-4:]
    return f"{parts.scheme}://{parts.netloc}{parts.path}?…••••{tail}" if parts.query \
        else f"{parts.scheme}://{parts.netloc}/…••••{tail}"
