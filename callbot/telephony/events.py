"""Events a call puts on ``Call.events`` (pure data; no pjsua2 here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callbot.telephony.outcome import CallResult


@dataclass(frozen=True)
class Ringing:
    """A provisional response: 180 (ringing) or 183 (session progress, early media)."""

    code: int
    early_media: bool = False


@dataclass(frozen=True)
class Answered:
    """The call is up (200 OK / ACK); Frame events follow."""


@dataclass(frozen=True)
class Frame:
    """20 ms of the other side's audio: 8 kHz 16-bit mono little-endian PCM (320 bytes); with
    ``dial(..., chunks=True)`` the bridge's whole chunk instead (MEDIA_PTIME_MS, a whole number
    of 320-byte frames: one event per chunk). ``early`` frames (183 early media, before the
    answer) come only with ``early_frames=True``."""

    pcm: bytes
    early: bool = False


@dataclass(frozen=True)
class Dtmf:
    """One DTMF key the other side pressed (RFC 2833 / SIP INFO)."""

    digit: str


@dataclass(frozen=True)
class PlaybackEnded:
    """A ``play()`` ended: ``completed`` is False when it was stopped, replaced or hung up."""

    play_id: int
    completed: bool = True


@dataclass(frozen=True)
class TransferStatus:
    """Progress of a SIP REFER we sent (``Call.refer``): the NOTIFY's status (100 trying, 200 the
    target answered, ≥ 300 failed); ``final`` on the last one."""

    code: int
    reason: str = ""
    final: bool = False


@dataclass(frozen=True)
class Disconnected:
    """The call is over; always the last event of a call."""

    result: CallResult


Event = Ringing | Answered | Frame | Dtmf | PlaybackEnded | TransferStatus | Disconnected
