"""Campaign tables on the one :class:`callbot.db.Base`: lists, contacts, campaigns, targets,
attempts, answers, do-not-call entries and line-worker heartbeats.

Times are naive UTC (``utcnow()``); calling windows convert to the campaign's time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from callbot.db import Base


def utcnow() -> datetime:
    """Now as naive UTC, the form every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class ContactList(Base):
    """A stored contact list (one upload)."""

    __tablename__ = "contact_lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    filename: Mapped[str] = mapped_column(String(300), default="")
    variables: Mapped[list[str]] = mapped_column(JSON, default=list)
    size: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="list", passive_deletes=True)


class Contact(Base):
    """One resident of a contact list: the columns as imported and the number as dialled."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_list_phone", "list_id", "phone"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("contact_lists.id", ondelete="CASCADE"))
    row: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(32), index=True)
    dial: Mapped[str] = mapped_column(String(32))
    extension: Mapped[str] = mapped_column(String(16), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    note: Mapped[str] = mapped_column(String(500), default="")
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    list: Mapped[ContactList] = relationship(back_populates="contacts")


class DoNotCall(Base):
    """A number no campaign may dial (勿扰名单)."""

    __tablename__ = "do_not_call"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), unique=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Campaign(Base):
    """A calling campaign: a list, a template and its settings (lines, windows, retries)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("contact_lists.id"))
    script: Mapped[str] = mapped_column(String(500))
    """Template name (e.g. ``mask_reservation``) or path of a YAML template."""
    lines: Mapped[int] = mapped_column(Integer, default=4)
    windows: Mapped[list[list[str]]] = mapped_column(JSON)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    daily_cap: Mapped[int] = mapped_column(Integer, default=3)
    record_calls: Mapped[bool] = mapped_column(Boolean, default=False)
    """Record whole calls (both sides) beside each reply's audio: personal data, off by default."""
    tts_personal: Mapped[str] = mapped_column(String(16), default="online")
    """``online``: prompts go whole to the installation's TTS engine (edge: Microsoft's online
    service, names included); ``offline``: the parts rendered from the contact (name, address,
    …) are synthesised on this box by espeak-ng (``callbot.speech.tts.PersonalOffline``)."""
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    """draft → running ⇄ paused → finished | cancelled."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    pause_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the dispatcher paused a running campaign by itself (every line worker's SIP peer is
    away); it resumes the campaign when a line answers again. None for a pause staff chose."""
    paused_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    list: Mapped[ContactList] = relationship()


class Target(Base):
    """One contact inside one campaign: where it stands and what it ended as."""

    __tablename__ = "campaign_targets"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        Index("ix_targets_due", "campaign_id", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    """pending (due at ``next_at``) → active (an attempt queued or dialing) → done."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts that reached the dialing stage."""
    next_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    result: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Final result once done: completed, incomplete, callback (asked to be called back, never
    finished), unreachable, invalid_number, refused, dnc, cancelled."""
    last_outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact] = relationship()
    campaign: Mapped[Campaign] = relationship()


DIALLED = ("dialing", "finished", "interrupted")
"""States of a dialled attempt: written ``dialing`` just before its INVITE, so the call was
placed (or is being placed). ``Target.attempts``, the daily cap and the campaign page's 已拨打
count these; queued and cancelled attempts were never dialled."""

DIALLED_OVER = ("finished", "interrupted")
"""The dialled attempts whose call is over (they have an outcome): what reports count."""


class Attempt(Base):
    """One call (or one queued intent to call). Written ``queued`` before the job is enqueued
    and ``dialing`` before the INVITE."""

    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_campaign_state", "campaign_id", "state"),
        Index("ix_attempts_phone_started", "phone", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    target_id: Mapped[int] = mapped_column(ForeignKey("campaign_targets.id", ondelete="CASCADE"),
                                           index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    phone: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer, default=0)
    """1 for the first dialled attempt of the target, 2 for the first retry, ..."""
    state: Mapped[str] = mapped_column(String(16), default="queued")
    """queued → dialing → finished | interrupted; queued → cancelled (never dialled)."""
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Telephony outcome: answered, no_answer, busy, rejected, invalid_number, failed,
    interrupted."""
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    """The script ran to its end."""
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    queued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    talk_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    sip_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ended: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """Why the call ended (session's ``ended``)."""
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    transcript: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    transfer_to: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """转人工: the duty phone the resident was put through to (None: no transfer tried)."""
    transfer_answered: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    transfer_talk_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Seconds the resident and the duty phone talked (bridged)."""
    announcement: Mapped[str | None] = mapped_column(Text, nullable=True)
    """What the line said instead of a resident — a carrier announcement or a voice assistant,
    as the recogniser wrote it (callbot.announcements); it decided ``outcome``. None: nothing."""


class Answer(Base):
    """One answer heard during a call, stored the moment the dialogue records it."""

    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_campaign_contact", "campaign_id", "contact_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"),
                                            index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(100))
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    heard_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    recording_id: Mapped[int | None] = mapped_column(
        ForeignKey("recordings.id", ondelete="SET NULL"), nullable=True, index=True)
    """The reply (``callbot.recordings.Recording``) whose words produced this answer."""


class LineWorker(Base):
    """A line-worker process; its heartbeat tells the reconciler it is alive."""

    __tablename__ = "line_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    lines: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    line_down_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    """Since when this worker's SIP peer does not answer (None: the line is up)."""
    line_down_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
