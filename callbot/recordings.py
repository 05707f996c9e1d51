"""The resident's voice kept: each reply's audio and, when the campaign says so, the whole call.

Audio is stored compressed (Ogg Opus, ≈ 1.4 kB/s of 8 kHz speech) in an :class:`AudioStore` every
host reads — the database by default (``CALLBOT_RECORDING_STORE=db``), so a web host shows what a
line worker on another host heard. A :class:`Recording` row links the audio to its attempt, the
question (step) it answered, its transcript, and (``Answer.recording_id``) the answers it
produced. Recordings older than ``CALLBOT_RECORDING_DAYS`` are purged by the dispatcher
(:func:`purge`); :func:`forget_resident` deletes one resident's recordings and transcripts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from callbot import defaults
from callbot.db import Base, session_scope
from callbot.exceptions import RecordingError
from callbot.recording_audio import (  # noqa: F401 - re-exported: the line side's half
    MIME,
    TURNS,
    Owner,
    Turns,
    _jsonable,
    call_seconds,
    decode,
    encode,
    encode_here,
    new_key,
    reply_meta,
    wav_pcm,
)

log = logging.getLogger(__name__)

KINDS = ("reply", "call")
KIND_LABELS = {"reply": "回答录音", "call": "整通录音"}


def _utcnow() -> datetime:
    from callbot.campaign.models import utcnow

    return utcnow()


# --- tables -------------------------------------------------------------------------------------


class Recording(Base):
    """One stored piece of a resident's voice: a reply (``kind='reply'``) or a whole call."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    """reply | call."""
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"),
                                            index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"),
                                             index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"),
                                            index=True)
    phone: Mapped[str] = mapped_column(String(32), index=True)
    """The resident's number (E.164), for deleting one resident's data."""
    step: Mapped[str] = mapped_column(String(100), default="")
    """The question a reply answered ("" for a whole call)."""
    line: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """Index of the reply's line in ``Attempt.transcript``."""
    text: Mapped[str] = mapped_column(Text, default="")
    pinyin: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    intent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    start_s: Mapped[float] = mapped_column(Float, default=0.0)
    """Where the audio begins, seconds from the answer."""
    end_s: Mapped[float] = mapped_column(Float, default=0.0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    mime: Mapped[str] = mapped_column(String(64), default=MIME)
    size: Mapped[int] = mapped_column(Integer, default=0)
    """Bytes stored."""
    store: Mapped[str] = mapped_column(String(16), default="db")
    key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow, index=True)


class AudioBlob(Base):
    """The database store's bytes (``CALLBOT_RECORDING_STORE=db``)."""

    __tablename__ = "audio_blobs"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_utcnow)


# --- stores -------------------------------------------------------------------------------------


class AudioStore(Protocol):
    """Where audio bytes live, by key; every host of an installation must reach the same one."""

    name: str

    def put(self, key: str, data: bytes) -> None:
        """Store *data* under *key* (a new key each time)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under *key*; RecordingError when there are none."""
        ...

    def delete(self, key: str) -> None:
        """Remove *key*; nothing happens when it is already gone."""
        ...


class DatabaseStore:
    """Audio in the ``audio_blobs`` table of the installation's database (the one-box default,
    and what many hosts share through one PostgreSQL)."""

    name = "db"

    def __init__(self, factory: sessionmaker[Session]):
        self.factory = factory

    def put(self, key: str, data: bytes) -> None:
        with session_scope(self.factory) as s:
            if s.scalar(select(AudioBlob.key).where(AudioBlob.key == key)) is None:
                s.add(AudioBlob(key=key, data=data))  # (a repeated put keeps the first)

    def get(self, key: str) -> bytes:
        with session_scope(self.factory) as s:
            data = s.scalar(select(AudioBlob.data).where(AudioBlob.key == key))
        if data is None:
            raise RecordingError(f"录音不存在或已删除 (no audio stored under {key})")
        return bytes(data)

    def delete(self, key: str) -> None:
        with session_scope(self.factory) as s:
            s.execute(delete(AudioBlob).where(AudioBlob.key == key))


STORES = ("db",)


def open_store(settings: Any, factory: sessionmaker[Session]) -> AudioStore:
    """The store *settings* name (``recording_store``); RecordingError for an unknown one."""
    name = getattr(settings, "recording_store", defaults.RECORDING_STORE) or "db"
    if name == "db":
        return DatabaseStore(factory)
    raise RecordingError(f"未知的录音存储 {name!r} (CALLBOT_RECORDING_STORE); 可用: "
                         f"{', '.join(STORES)}")


# --- storing ------------------------------------------------------------------------------------


def add_reply(factory: sessionmaker[Session], store_name: str, owner: Owner,
              reply: Any) -> tuple[int, str] | None:
    """The row of one reply (``session.Reply``), before its audio is stored (see
    :func:`put_audio`): cheap enough for the call's thread. Returns (id, key), or None for a
    reply without audio."""
    if not reply.audio:
        return None
    key = new_key()
    return add_reply_row(factory, store_name, owner, reply_meta(reply), key), key


def add_reply_row(factory: sessionmaker[Session], store_name: str, owner: Owner,
                  meta: dict[str, Any], key: str) -> int:
    """The row of one reply under *key* (chosen by the caller); returns its id. Safe to repeat:
    a row with that key already there (a retried request whose first try committed) is it."""
    with session_scope(factory) as s:
        got = s.scalar(select(Recording.id).where(Recording.key == key))
        if got is not None:
            return int(got)
        row = Recording(kind="reply", attempt_id=owner.attempt_id,
                        campaign_id=owner.campaign_id, contact_id=owner.contact_id,
                        phone=owner.phone, mime=MIME, size=0, store=store_name, key=key,
                        **{k: meta.get(k) for k in REPLY_META})
        s.add(row)
        s.flush()
        return int(row.id)


REPLY_META = ("step", "line", "text", "pinyin", "confidence", "intent", "value", "urgent",
              "start_s", "end_s", "duration_s")


def put_audio(factory: sessionmaker[Session], store: AudioStore, rec_id: int, key: str,
              pcm: bytes, *, defer_s: float = defaults.RECORDING_DEFER_MAX_S) -> int:
    """Compress *pcm* into the store under the row's *key*; returns the bytes stored. Run on the
    audio thread: it first waits (at most *defer_s*) until no call of this process is between a
    reply and its next prompt (:data:`TURNS`)."""
    if defer_s > 0:
        TURNS.quiet(defer_s)
    return put_encoded(factory, store, rec_id, key, encode(pcm))


def put_encoded(factory: sessionmaker[Session], store: AudioStore, rec_id: int, key: str,
                data: bytes) -> int:
    """Store audio already compressed (``encode``) under the row's *key*; safe to repeat."""
    if isinstance(store, DatabaseStore) and store.factory is factory:
        # one transaction, not two: on SQLite every write takes the lock the calls' threads need;
        # Core statements on the engine, not an ORM session (three replies a call reach the
        # store process: 2.0 → ~0.8 CPU-ms each)
        from sqlalchemy import insert

        from callbot.db import table_of

        blobs, recs = table_of(AudioBlob), table_of(Recording)
        with factory.kw["bind"].begin() as conn:
            if conn.execute(select(blobs.c.key).where(blobs.c.key == key)).first() is None:
                conn.execute(insert(blobs).values(key=key, data=data))
            conn.execute(update(recs).where(recs.c.id == rec_id).values(size=len(data)))
        return len(data)
    store.put(key, data)
    with session_scope(factory) as s:
        s.execute(update(Recording).where(Recording.id == rec_id).values(size=len(data)))
    return len(data)


def store_call(factory: sessionmaker[Session], store: AudioStore, owner: Owner,
               wav: str | Path) -> int | None:
    """Store a whole-call WAV (both sides); returns the row id, None for an empty file."""
    pcm = wav_pcm(wav)
    if not pcm:
        return None
    return add_call(factory, store, owner, new_key(), encode(pcm), call_seconds(pcm))


def add_call(factory: sessionmaker[Session], store: AudioStore, owner: Owner, key: str,
             data: bytes, dur: float) -> int:
    """Store a whole call's compressed audio under *key* and its row; returns the row id. Safe
    to repeat (a row with that key already there is it)."""
    with session_scope(factory) as s:
        got = s.scalar(select(Recording.id).where(Recording.key == key))
        if got is not None:
            return int(got)
    store.put(key, data)
    with session_scope(factory) as s:
        row = Recording(kind="call", attempt_id=owner.attempt_id, campaign_id=owner.campaign_id,
                        contact_id=owner.contact_id, phone=owner.phone, step="", start_s=0.0,
                        end_s=dur, duration_s=dur, mime=MIME, size=len(data), store=store.name,
                        key=key)
        s.add(row)
        s.flush()
        return int(row.id)


# --- retention and deletion ---------------------------------------------------------------------


def _drop(factory: sessionmaker[Session], store: AudioStore,
          found: list[tuple[int, str]]) -> int:
    """Delete the audio of *found* (id, key) first, then the rows, each in its own transaction
    (a store may be the same database: no transaction is held open while it works). A failure in
    between leaves a row whose audio is gone, never audio nobody can find."""
    from callbot.campaign.models import Answer

    if not found:
        return 0
    for _id, key in found:
        store.delete(key)
    ids = [i for i, _k in found]
    with session_scope(factory) as s:
        s.execute(update(Answer).where(Answer.recording_id.in_(ids)).values(recording_id=None))
        s.execute(delete(Recording).where(Recording.id.in_(ids)))
    return len(ids)


def purge(factory: sessionmaker[Session], store: AudioStore, *,
          days: int = defaults.RECORDING_DAYS, now: datetime | None = None,
          batch: int = 500) -> int:
    """Delete every recording older than *days*; returns how many went."""
    cutoff = (now or _utcnow()) - timedelta(days=days)
    total = 0
    while True:
        with session_scope(factory) as s:
            found = [(int(i), str(k)) for i, k in s.execute(
                select(Recording.id, Recording.key).where(Recording.created_at < cutoff)
                .order_by(Recording.id).limit(batch))]
        n = _drop(factory, store, found)
        total += n
        if n < batch:
            break
    if total:
        log.info("purged %d recording(s) older than %d days", total, days)
    return total


@dataclass
class Forgotten:
    """What :func:`forget_resident` deleted."""

    phone: str
    recordings: int = 0
    transcripts: int = 0
    """Attempts whose transcript was deleted."""
    answers: int = 0
    """Answers that held the resident's own words (text fields such as 居民原话)."""


def forget_resident(factory: sessionmaker[Session], store: AudioStore, phone: str, *,
                    by: str, ip: str | None = None) -> Forgotten:
    """Delete one resident's recordings and transcripts (personal data), in every campaign:
    reply audio and call recordings, the attempts' transcripts, and answers holding their own
    words (text fields). Results such as 安好/需要帮助 stay. *phone* in any form a list accepts;
    *by* (and *ip*) go to the audit log, written in the same transaction as the deletion."""
    from callbot.accounts import audit, mask_phone
    from callbot.campaign.models import Answer, Attempt, Campaign, Contact
    from callbot.contacts import normalize_phone

    try:
        e164 = normalize_phone(phone)[0]
    except ValueError as exc:
        raise RecordingError(str(exc)) from None
    out = Forgotten(phone=e164)
    with session_scope(factory) as s:
        contact_ids = list(s.scalars(select(Contact.id).where(Contact.phone == e164)))
        found = [(int(i), str(k)) for i, k in s.execute(
            select(Recording.id, Recording.key).where(
                (Recording.phone == e164) | Recording.contact_id.in_(contact_ids)))]
    out.recordings = _drop(factory, store, found)
    with session_scope(factory) as s:
        if contact_ids:
            attempts = s.scalars(select(Attempt).where(Attempt.contact_id.in_(contact_ids),
                                                       Attempt.transcript.is_not(None))).all()
            for a in attempts:
                a.transcript = None
            out.transcripts = len(attempts)
            text_fields: dict[int, set[str]] = {}
            for ans in s.scalars(select(Answer).where(Answer.contact_id.in_(contact_ids))).all():
                if ans.campaign_id not in text_fields:
                    c = s.get(Campaign, ans.campaign_id)
                    text_fields[ans.campaign_id] = _text_fields(c.script if c else "")
                if ans.field in text_fields[ans.campaign_id] and ans.value is not None:
                    s.delete(ans)
                    out.answers += 1
        audit(s, by, "forget_resident", f"phone:{mask_phone(e164)}",
              f"recordings={out.recordings} transcripts={out.transcripts} answers={out.answers}",
              ip=ip)
    return out


def _text_fields(script: str) -> set[str]:
    """Fields of a script that hold free text (the resident's words)."""
    from callbot.exceptions import TemplateError
    from callbot.script import load_script

    try:
        sc = load_script(script)
    except (TemplateError, OSError):
        return {"note"}  # the built-ins' name for it, when the template is gone
    return {name for name, f in sc.fields.items() if f.type == "text"}
