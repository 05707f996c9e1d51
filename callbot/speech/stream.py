"""What every recogniser shares: the events a stream yields, the Protocols of an engine, its
stream and its decoder, and the endpointing stream (webrtcvad) that gates decoding so an idle
line costs a VAD call per frame. The engines (``pinyin_asr``, ``kws``, ``vosk_asr``) build on
this module; ``asr`` picks one by name. A stream ends with exactly one ``Final`` or ``NoInput``;
later frames are ignored."""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from callbot import defaults
from callbot.exceptions import MissingExtraError, SpeechError

log = logging.getLogger(__name__)

FRAME_BYTES = defaults.FRAME_BYTES
FRAME_S = defaults.FRAME_MS / 1000


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    """The callee started speaking (use it as the barge-in signal while a prompt plays)."""

    start_s: float


@dataclass(frozen=True)
class Partial:
    """What the engine has heard so far of the current reply."""

    text: str


@dataclass(frozen=True)
class Final:
    """The reply ended. ``match`` is one of the expected phrases or None; times from stream start.

    ``audio`` is the reply itself (8 kHz 16-bit mono PCM) from ``start_s`` (the detected speech
    start less the preroll) to just after the end of speech (``end_s`` + ``ASR_REPLY_AUDIO_TAIL_S``).
    ``pinyin``: the toned pinyin transcript (``pinyin`` engine), "" when the engine gives none.
    """

    text: str
    match: str | None
    confidence: float
    end_s: float
    audio: bytes = field(default=b"", repr=False)
    start_s: float = 0.0
    pinyin: str = ""
    answer: dict[str, Any] | None = field(default=None, compare=False)
    """The host's speech process's classification of the reply (``RemoteAsr`` given the
    question's intents; its wire format), None when the reply was not classified there."""


@dataclass(frozen=True)
class NoInput:
    """Nobody spoke within ``no_input_s``."""

    after_s: float


Event = SpeechStarted | Partial | Final | NoInput


# --- protocols ----------------------------------------------------------------------------------


@runtime_checkable
class AsrStream(Protocol):
    """One reply being listened to."""

    def accept(self, frame: bytes) -> list[Event]:
        """Feed one frame (20 ms, 8 kHz, 16-bit mono PCM); get the events it caused."""
        ...

    def finish(self) -> list[Event]:
        """End the reply now (hang-up, end of file): the remaining Final/NoInput, if any."""
        ...

    @property
    def done(self) -> bool:
        """True once Final or NoInput was returned."""
        ...

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and the end of the reply."""
        ...


@runtime_checkable
class AsrEngine(Protocol):
    """A loaded model; makes one stream per question. Safe to share between calls in a process."""

    name: str
    model_name: str

    def stream(self, expect: Sequence[str], *, no_input_s: float = defaults.ASR_NO_INPUT_S,
               max_reply_s: float = defaults.ASR_MAX_REPLY_S,
               trailing_silence_s: float = defaults.ASR_TRAILING_SILENCE_S) -> AsrStream:
        """A stream listening for the *expect* phrases."""
        ...


class Decoder(Protocol):
    """The engine-specific part of a stream: audio of one reply in, text and match out."""

    def feed(self, pcm: bytes) -> str | None:
        """Decode more of the reply; return new partial text when it changed."""
        ...

    def result(self) -> tuple[str, str | None, float] | tuple[str, str | None, float, str]:
        """Flush and return (text, match, confidence[, pinyin]) for the whole reply."""
        ...


# --- matching -----------------------------------------------------------------------------------


def _squash(text: str) -> str:
    return "".join(text.split()).lower()


def pick_match(text: str, expect: Sequence[str]) -> str | None:
    """The expected phrase *text* says: an exact match, else the longest phrase contained in it.

    Longest wins so that 不需要 is never read as 需要, nor 不要 as 要.
    """
    heard = _squash(text)
    if not heard:
        return None
    for phrase in expect:
        if _squash(phrase) == heard:
            return phrase
    inside = [p for p in expect if _squash(p) and _squash(p) in heard]
    if not inside:
        return None
    return max(inside, key=lambda p: (len(_squash(p)), -heard.index(_squash(p))))


# --- endpointing --------------------------------------------------------------------------------


def make_vad(mode: int) -> Any:
    """A webrtcvad voice detector at aggressiveness *mode* (0–3); names the extra if missing."""
    try:
        import webrtcvad
    except ImportError as exc:
        raise MissingExtraError("webrtcvad", "speech") from exc
    return webrtcvad.Vad(mode)


def _vad_process(vad: Any) -> tuple[Any, Any]:
    """``(process, handle)``: ``process(handle, rate, frame, samples)`` says whether a frame is
    voiced — webrtcvad's C call itself, without its Python ``Vad.is_speech`` wrapper (the
    stream checks a frame's length), or the wrapper when the module is not the one known."""
    try:
        import _webrtcvad

        return _webrtcvad.process, vad._vad
    except (ImportError, AttributeError):
        return (lambda _h, rate, frame, _n: vad.is_speech(frame, rate)), None


class EndpointingStream:
    """VAD-gated stream: start of speech, trailing silence, no-input and max-length, any decoder."""

    def __init__(self, decoder: Decoder, *, no_input_s: float, max_reply_s: float,
                 trailing_silence_s: float, vad_mode: int = defaults.ASR_VAD_MODE,
                 start_ms: int = defaults.ASR_SPEECH_START_MS,
                 preroll_ms: int = defaults.ASR_PREROLL_MS,
                 decode_silence_s: float = defaults.ASR_DECODE_SILENCE_S,
                 long_reply_s: float = defaults.ASR_LONG_REPLY_S,
                 long_silence_s: float = defaults.ASR_LONG_REPLY_SILENCE_S):
        if no_input_s <= 0 or max_reply_s <= 0 or trailing_silence_s <= 0:
            raise ValueError("no_input_s, max_reply_s and trailing_silence_s must be > 0")
        self._decoder = decoder
        self._vad = make_vad(vad_mode)
        self._process, self._handle = _vad_process(self._vad)
        self.no_input_s = no_input_s
        self.max_reply_s = max_reply_s
        self.trailing_silence_s = trailing_silence_s
        # a reply that has already run long is talk, not a short answer: wait out its pauses
        self.long_reply_s = long_reply_s
        self.long_silence_s = max(trailing_silence_s, long_silence_s)
        self._window: collections.deque[bool] = collections.deque(maxlen=10)  # last 200 ms
        self._start_frames = max(1, start_ms // defaults.FRAME_MS)
        self._preroll: collections.deque[bytes] = collections.deque(
            maxlen=max(1, preroll_ms // defaults.FRAME_MS))
        self._n = 0  # frames seen
        self._speech_start: float | None = None
        self._last_voiced_end = 0.0
        self._silent_frames = 0
        self._decode_silence_frames = max(1, round(decode_silence_s / FRAME_S))
        self._held: list[bytes] = []  # silence not decoded (yet): fed only if speech resumes
        self._audio: list[bytes] = []  # the reply's frames from the preroll on (Final.audio)
        self._audio_start = 0.0
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def in_speech(self) -> bool:
        """Whether a reply is being decoded right now."""
        return self._speech_start is not None and not self._done

    def accept(self, frame: bytes) -> list[Event]:
        if self._done:
            return []
        if len(frame) != FRAME_BYTES:
            raise SpeechError(f"ASR frame must be {FRAME_BYTES} bytes (20 ms at 8 kHz), got {len(frame)}")
        self._n += 1
        now = self._n * FRAME_S
        voiced = self._process(self._handle, defaults.SAMPLE_RATE, frame, FRAME_BYTES // 2)
        events: list[Event] = []
        if self._speech_start is None:
            self._window.append(voiced)
            self._preroll.append(frame)
            if sum(self._window) >= self._start_frames:
                # speech began at the first voiced frame of the window
                lead = len(self._window) - list(self._window).index(True)
                self._speech_start = now - lead * FRAME_S
                self._last_voiced_end = now
                events.append(SpeechStarted(round(self._speech_start, 3)))
                self._audio = list(self._preroll)
                self._audio_start = now - len(self._preroll) * FRAME_S
                self._feed(b"".join(self._preroll), events)
                self._preroll.clear()
            elif now >= self.no_input_s:
                self._done = True
                events.append(NoInput(round(now, 3)))
            return events
        self._audio.append(frame)
        if voiced:
            self._silent_frames = 0
            self._last_voiced_end = now
            if self._held:
                self._feed(b"".join(self._held), events)
                self._held.clear()
            self._feed(frame, events)
        else:
            self._silent_frames += 1
            if self._silent_frames <= self._decode_silence_frames:
                self._feed(frame, events)
            else:  # the decoder has seen enough silence to settle: spare the CPU
                self._held.append(frame)
        silence = self.trailing_silence_s
        if self._last_voiced_end - self._speech_start >= self.long_reply_s or (
                self._silent_frames * FRAME_S >= silence and _continues(self._decoder)):
            silence = self.long_silence_s  # talk, or a reply that stopped on 还行 / 就是 …: wait on
        if (self._silent_frames * FRAME_S >= silence
                or now - self._speech_start >= self.max_reply_s):
            events.append(self._final())
        return events

    def finish(self) -> list[Event]:
        if self._done:
            return []
        if self._speech_start is None:
            self._done = True
            return [NoInput(round(self._n * FRAME_S, 3))]
        return [self._final()]

    def _feed(self, pcm: bytes, events: list[Event]) -> None:
        text = self._decoder.feed(pcm)
        if text:
            events.append(Partial(text))

    def _final(self) -> Final:
        self._done = True
        res = self._decoder.result()
        text, match, confidence = res[0], res[1], res[2]
        pinyin = res[3] if len(res) > 3 else ""
        keep = round((self._last_voiced_end + defaults.ASR_REPLY_AUDIO_TAIL_S - self._audio_start)
                     / FRAME_S)
        audio = b"".join(self._audio[:max(0, keep)])
        self._audio = []
        return Final(text, match, round(confidence, 3), round(self._last_voiced_end, 3),
                     audio=audio, start_s=round(self._audio_start, 3), pinyin=str(pinyin),
                     answer=_answer_of(self._decoder))


def _continues(decoder: Any) -> bool:
    """Whether the reply heard so far stops on a word that goes on (the decoder's ``continues``:
    还行，| 就是腿疼 — cut at the comma the first half is a "fine")."""
    continues = getattr(decoder, "continues", None)
    return bool(continues()) if callable(continues) else False


def _answer_of(decoder: Any) -> dict[str, Any] | None:
    answer = getattr(decoder, "answer", None)
    return answer if isinstance(answer, dict) else None


class NoPhrases:
    """Decoder for a question that expects no words (keys only): endpointing and barge-in alone."""

    def feed(self, pcm: bytes) -> str | None:
        return None

    def result(self) -> tuple[str, str | None, float]:
        return "", None, 0.0
