"""The half of :mod:`callbot.recordings` a line process needs without the database: whose voice it
is (:class:`Owner`), Opus encoding, WAV reading and this process's turns (:data:`TURNS`).

A line process of ``callbot worker`` beside the host's store process encodes its audio here (or in
the speech process) and hands the bytes to the store, so it never imports SQLAlchemy and the
models; :mod:`callbot.recordings` re-exports every name.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from callbot import defaults
from callbot.exceptions import RecordingError

MIME = "audio/ogg"
"""What the stored audio is (Ogg Opus; Chromium, Firefox and Safari ≥ 17 play it)."""


@dataclass(frozen=True)
class Owner:
    """Whose voice it is: the attempt that heard it, its campaign, contact and number."""

    attempt_id: int
    campaign_id: int
    contact_id: int
    phone: str


def new_key() -> str:
    """A fresh key for one piece of audio in the store."""
    return f"rec/{uuid.uuid4().hex}.ogg"


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


def _jsonable(x: Any) -> Any:
    import json

    return None if x is None else json.loads(json.dumps(x, ensure_ascii=False, default=str))


def reply_meta(reply: Any) -> dict[str, Any]:
    """What a reply's row keeps of one ``session.Reply`` (its audio goes to the store)."""
    return {"step": reply.step or "", "line": reply.line, "text": reply.text or "",
            "pinyin": reply.pinyin or "", "confidence": reply.confidence,
            "intent": reply.intent, "value": _jsonable(reply.value),
            "urgent": bool(reply.urgent), "start_s": reply.start_s, "end_s": reply.end_s,
            "duration_s": round(reply.duration_s, 3)}


def call_seconds(pcm: bytes) -> float:
    """How long 8 kHz 16-bit PCM plays, s (a call recording's duration)."""
    return round(len(pcm) / 2 / defaults.SAMPLE_RATE, 3)


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
"""This process's turns: the session marks them, ``recordings.put_audio`` waits for a quiet
moment."""
