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
import threading
import time
import uuid
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

log = logging.getLogger(__name__)

MIME = "audio/ogg"
"""What the stored audio is (Ogg Opus; Chromium, Firefox and Safari ≥ 17 play it)."""

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
            s.add(AudioBlob(key=key, data=data))

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


# --- audio --------------------------------------------------------------------------------------


def encode(pcm: bytes, rate: int = defaults.SAMPLE_RATE,
           level: float = defaults.RECORDING_OPUS_LEVEL) -> bytes:
    """16-bit mono PCM → Ogg Opus bytes. A line process of ``callbot worker`` has the host's
    speech process encode it (numpy and libsndfile stay out of every line process)."""
    if not pcm:
        raise RecordingError("没有可保存的声音 (no audio to store)")
    from callbot.speech.service import encode_remote

    data = encode_remote(pcm, rate, level)
    return data if data is not None else encode_here(pcm, rate, level)


def encode_here(pcm: bytes, rate: int = defaults.SAMPLE_RATE,
                level: float = defaults.RECORDING_OPUS_LEVEL) -> bytes:
    """``encode`` in this process."""
    from callbot.speech import opus

    return opus.encode(pcm, rate, level)


def decode(data: bytes) -> tuple[bytes, int]:
    """Stored audio → (16-bit mono PCM, sample rate)."""
    from callbot.speech import opus

    return opus.decode(data)


def wav_pcm(path: str | Path) -> bytes:
    """A WAV file's audio as 8 kHz 16-bit mono PCM."""
    from callbot.speech.audio import read_8k

    return read_8k(Path(path))


# --- when the audio thread may work ------------------------------------------------------------


class Turns:
    """Calls of this process that are in a *turn*: the resident is speaking, or has finished and
    the next prompt has not started yet — the reply → prompt path, whose latency a resident
    hears. The audio thread (Opus encoding, the blob write and, on SQLite, its write lock) waits
    for a moment when no call is in one (:meth:`quiet`), so it never competes with that path;
    while a prompt plays or the line is silent it has the CPUs to itself."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[object] = set()

    def begin(self, call: object) -> None:
        """*call* is in a turn (its resident started speaking)."""
        with self._cond:
            self._busy.add(call)

    def end(self, call: object) -> None:
        """*call*'s turn is over (its next prompt started, no reply came, it hung up)."""
        with self._cond:
            if call in self._busy:
                self._busy.discard(call)
                if not self._busy:
                    self._cond.notify_all()

    @property
    def busy(self) -> int:
        """How many calls are in a turn now."""
        with self._cond:
            return len(self._busy)

    def quiet(self, max_s: float) -> float:
        """Wait until no call is in a turn, at most *max_s*; returns the seconds waited."""
        t = time.monotonic()
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, timeout=max_s)
        return time.monotonic() - t


TURNS = Turns()
"""This process's turns: the session marks them, :func:`put_audio` waits for a quiet moment."""


# --- storing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """Whose voice it is: the attempt that heard it, its campaign, contact and number."""

    attempt_id: int
    campaign_id: int
    contact_id: int
    phone: str


def _new_key() -> str:
    return f"rec/{uuid.uuid4().hex}.ogg"


def add_reply(factory: sessionmaker[Session], store_name: str, owner: Owner,
              reply: Any) -> tuple[int, str] | None:
    """The row of one reply (``session.Reply``), before its audio is stored (see
    :func:`put_audio`): cheap enough for the call's thread. Returns (id, key), or None for a
    reply without audio."""
    if not reply.audio:
        return None
    key = _new_key()
    with session_scope(factory) as s:
        row = Recording(kind="reply", attempt_id=owner.attempt_id,
                        campaign_id=owner.campaign_id, contact_id=owner.contact_id,
                        phone=owner.phone, step=reply.step or "", line=reply.line,
                        text=reply.text or "", pinyin=reply.pinyin or "",
                        confidence=reply.confidence, intent=reply.intent,
                        value=_jsonable(reply.value), urgent=bool(reply.urgent),
                        start_s=reply.start_s, end_s=reply.end_s,
                        duration_s=round(reply.duration_s, 3), mime=MIME, size=0,
                        store=store_name, key=key)
        s.add(row)
        s.flush()
        return int(row.id), key


def put_audio(factory: sessionmaker[Session], store: AudioStore, rec_id: int, key: str,
              pcm: bytes, *, defer_s: float = defaults.RECORDING_DEFER_MAX_S) -> int:
    """Compress *pcm* into the store under the row's *key*; returns the bytes stored. Run on the
    audio thread: it first waits (at most *defer_s*) until no call of this process is between a
    reply and its next prompt (:data:`TURNS`)."""
    if defer_s > 0:
        TURNS.quiet(defer_s)
    data = encode(pcm)
    if isinstance(store, DatabaseStore) and store.factory is factory:
        # one transaction, not two: on SQLite every write takes the lock the calls' threads need
        with session_scope(factory) as s:
            s.add(AudioBlob(key=key, data=data))
            s.execute(update(Recording).where(Recording.id == rec_id).values(size=len(data)))
        return len(data)
    store.put(key, data)
    with session_scope(factory) as s:
        s.execute(update(Recording).where(Recording.id == rec_id).values(size=len(data)))
    return len(data)


def store_reply(factory: sessionmaker[Session], store: AudioStore, owner: Owner,
                reply: Any) -> int | None:
    """Store one reply, row and audio, now; returns the row id (None for a reply without
    audio). Line workers use :func:`add_reply` + :func:`put_audio` off the call's thread."""
    added = add_reply(factory, store.name, owner, reply)
    if added is None:
        return None
    put_audio(factory, store, added[0], added[1], reply.audio, defer_s=0)
    return added[0]


def store_call(factory: sessionmaker[Session], store: AudioStore, owner: Owner,
               wav: str | Path) -> int | None:
    """Store a whole-call WAV (both sides); returns the row id, None for an empty file."""
    pcm = wav_pcm(wav)
    if not pcm:
        return None
    data = encode(pcm)
    key = _new_key()
    store.put(key, data)
    dur = round(len(pcm) / 2 / defaults.SAMPLE_RATE, 3)
    with session_scope(factory) as s:
        row = Recording(kind="call", attempt_id=owner.attempt_id, campaign_id=owner.campaign_id,
                        contact_id=owner.contact_id, phone=owner.phone, step="", start_s=0.0,
                        end_s=dur, duration_s=dur, mime=MIME, size=len(data), store=store.name,
                        key=key)
        s.add(row)
        s.flush()
        return int(row.id)


def _jsonable(x: Any) -> Any:
    import json

    return None if x is None else json.loads(json.dumps(x, ensure_ascii=False, default=str))


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
