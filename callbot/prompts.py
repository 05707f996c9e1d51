"""A call's prompts, ready before dialling: every text the script may say rendered by the TTS
engine (cached), staff recordings converted, slowed copies of questions asked again; consecutive
prompts are joined into one WAV when they are first due (their PCM read from the cache files then,
not held for the whole call: a few MB per call in every line process)."""

from __future__ import annotations

import logging
import os
import wave
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from callbot import defaults
from callbot.dialogue import Say

log = logging.getLogger("callbot.prompts")


class Tts(Protocol):
    """What a call needs of a TTS engine (``callbot.speech.tts.PromptRenderer``); ``prerender``
    (render many texts in one go) and ``cache_dir`` are used when the engine has them."""

    def render(self, text: str, *, voice: str | None = None, rate: str | None = None) -> Any:
        """Path of an 8 kHz mono WAV saying *text* (cached)."""
        ...


def prompt_files(tts: Tts, texts: Iterable[str], *, voice: str | None = None,
                 rate: str | None = None) -> dict[str, Path]:
    """Render every text (``tts.prerender`` when the engine has it) → text: WAV path. A script's
    own *voice* / *rate* go to ``tts.render(text, voice=, rate=)``."""
    texts = list(dict.fromkeys(t for t in texts if t))
    if voice is not None or rate is not None:
        kw = {k: v for k, v in (("voice", voice), ("rate", rate)) if v is not None}
        return {t: Path(tts.render(t, **kw)) for t in texts}
    done: Mapping[str, Any] | None = None
    if hasattr(tts, "prerender"):
        got = tts.prerender(texts)
        if isinstance(got, Mapping):
            done = got
        elif isinstance(got, list | tuple) and len(got) == len(texts):
            done = dict(zip(texts, got, strict=True))
    out: dict[str, Path] = {}
    for text in texts:
        path = done.get(text) if done else None
        out[text] = Path(path if path is not None else tts.render(text))
    return out


def slow_files(tts: Tts, texts: Iterable[str], *, voice: str | None = None,
               rate: str | None = None) -> dict[str, Path]:
    """The slowed copies of *texts* (asked again after 你说什么): at ``slower(rate)``, derived
    from their render at *rate* when *tts* can (``derives_slower``: espeak stretches its render
    instead of synthesising each contact's greeting twice)."""
    if not getattr(tts, "derives_slower", False):
        return prompt_files(tts, texts, voice=voice, rate=slower(rate))
    kw = {"voice": voice} if voice is not None else {}
    return {t: Path(tts.render(t, rate=slower(rate),  # type: ignore[call-arg]
                                  from_rate=rate or getattr(tts, "rate", None) or "+0%", **kw))
            for t in dict.fromkeys(t for t in texts if t)}


def _read_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (defaults.SAMPLE_RATE, 1, 2):
            return w.readframes(w.getnframes())
    from callbot.speech.audio import read_8k

    return read_8k(path)


_AUDIO_KEY = "\0audio:"  # prompt keys of staff recordings (never a rendered text)
_SLOW_KEY = "\0slow:"  # a question asked again slower after 你说什么


def prompt_key(say: Say) -> str:
    """The prompt a Say plays: its recording when it has one, else its text (slower: its own)."""
    audio = getattr(say, "audio", None)
    if audio:
        return _AUDIO_KEY + audio
    return _SLOW_KEY + say.text if getattr(say, "slow", False) else say.text


def slower(rate: str | None) -> str:
    """The speaking rate of a question asked again: *rate* (``-15%``) lowered by
    ``defaults.DIALOGUE_REPEAT_RATE_DELTA`` points, never below -50 %."""
    base = int((rate or "+0%").strip().rstrip("%") or 0)
    return f"{max(-50, base + defaults.DIALOGUE_REPEAT_RATE_DELTA):+d}%"


def recording_file(src: str | os.PathLike[str], cache_dir: Path) -> Path:
    """A staff recording normalised to 8 kHz mono WAV, once (cached by its content hash)."""
    import hashlib

    from callbot.speech.tts import normalise_recording

    digest = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    dst = cache_dir / digest[:2] / f"{digest}.wav"
    if dst.is_file() and dst.stat().st_size > 44:
        return dst
    return normalise_recording(Path(src), dst)


def _recordings_dir(tts: Tts) -> Path:
    tts_cache = getattr(tts, "cache_dir", None)
    if isinstance(tts_cache, str | os.PathLike):
        return Path(tts_cache) / "recordings"
    from callbot.config import load_settings

    return Path(load_settings().cache_dir) / "recordings"


class Prompts:
    """Every prompt of one call rendered (file and duration known); consecutive prompts are joined
    into one WAV per batch, from the cache files, when the batch is first played.

    Only the durations are held in memory (a script's PCM is 3–5 MB; held for the whole call it
    was the biggest part of a line process's growth per call). Reading two or three cached WAVs
    back to join them takes well under a millisecond."""

    def __init__(self, tts: Tts, texts: Iterable[str], workdir: Path, *,
                 voice: str | None = None, rate: str | None = None,
                 audio: Iterable[str] = (), slow: Iterable[str] = ()):
        self.tts = tts
        self.workdir = workdir
        self.kw = {k: v for k, v in (("voice", voice), ("rate", rate)) if v is not None}
        self.files = prompt_files(tts, texts, voice=voice, rate=rate)
        for text, path in slow_files(tts, slow, voice=voice, rate=rate).items():
            self.files[_SLOW_KEY + text] = path
        audio = list(dict.fromkeys(audio))
        if audio:
            rec_dir = _recordings_dir(tts)
            for src in audio:
                self.files[_AUDIO_KEY + src] = recording_file(src, rec_dir)
        self.seconds = {text: _check_seconds(path) for text, path in self.files.items()}
        """Duration of each prompt; every file was opened once here (a bad WAV fails before
        dialling)."""
        self._batches: dict[tuple[str, ...], tuple[Path, float]] = {}

    def _file(self, text: str) -> Path:
        """The prompt's WAV, rendered now when it was not foreseen before dialling (or its cache
        file was removed since)."""
        path = self.files.get(text)
        if path is not None and path.is_file():
            return path
        if text.startswith(_AUDIO_KEY):
            path = recording_file(text[len(_AUDIO_KEY):], _recordings_dir(self.tts))
        else:
            log.warning("prompt not pre-rendered, rendering during the call: %s", text)
            if text.startswith(_SLOW_KEY):
                text_ = text[len(_SLOW_KEY):]
                path = slow_files(self.tts, [text_], voice=self.kw.get("voice"),
                                  rate=self.kw.get("rate"))[text_]
            else:
                path = Path(self.tts.render(text, **self.kw))
        self.files[text] = path
        self.seconds[text] = _check_seconds(path)
        return path

    def batch(self, texts: tuple[str, ...]) -> tuple[Path, float]:
        """A WAV saying *texts* back to back, and its duration in seconds."""
        if len(texts) == 1:
            path = self._file(texts[0])
            return path, self.seconds[texts[0]]
        done = self._batches.get(texts)
        if done is not None and done[0].is_file():
            return done
        path = self.workdir / f"batch-{len(self._batches)}.wav"
        n = 0
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(defaults.SAMPLE_RATE)
            for t in texts:
                pcm = _read_pcm(self._file(t))
                w.writeframes(pcm)
                n += len(pcm)
        self._batches[texts] = (path, n / 2 / defaults.SAMPLE_RATE)
        return self._batches[texts]

    def duration(self, text: str) -> float:
        if text not in self.seconds:
            self._file(text)
        return self.seconds[text]


def _check_seconds(path: Path) -> float:
    """Seconds of a prompt WAV as a call plays it (8 kHz mono 16-bit; other formats converted)."""
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (defaults.SAMPLE_RATE, 1, 2):
            return w.getnframes() / defaults.SAMPLE_RATE
    return len(_read_pcm(path)) / 2 / defaults.SAMPLE_RATE


def render_prompts(tts: Any, script: Any, variables: Mapping[str, Any] | None, *,
                   committee: str | None = None, tts_rate: str | None = None) -> int:
    """Render every prompt a call to this contact may play (what ``run_call`` renders before
    dialling) into *tts*'s cache, ahead of the call (the dispatcher does, for every host);
    how many prompts."""
    from callbot.dialogue import DialogueEngine
    from callbot.script import Script, load_script

    if not isinstance(script, Script):
        script = load_script(script)
    engine = DialogueEngine(script, variables or {}, committee=committee)
    rate = tts_rate or script.rate
    files = prompt_files(tts, engine.prompts(), voice=script.voice, rate=rate)
    slow = slow_files(tts, engine.slow_prompts(), voice=script.voice, rate=rate)
    return len(files) + len(slow)
