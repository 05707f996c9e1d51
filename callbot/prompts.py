"""A call's prompts, ready before dialling: every text the script may say rendered by the TTS
engine (cached), staff recordings converted, slowed copies of questions asked again, all held as
PCM so a prompt starts the moment it is due; consecutive prompts are joined into one WAV."""

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
    """PCM of every prompt in memory; consecutive prompts are joined into one WAV per batch."""

    def __init__(self, tts: Tts, texts: Iterable[str], workdir: Path, *,
                 voice: str | None = None, rate: str | None = None,
                 audio: Iterable[str] = (), slow: Iterable[str] = ()):
        self.tts = tts
        self.workdir = workdir
        self.kw = {k: v for k, v in (("voice", voice), ("rate", rate)) if v is not None}
        self.slow_kw = {**self.kw, "rate": slower(rate)}
        self.files = prompt_files(tts, texts, voice=voice, rate=rate)
        for text, path in prompt_files(tts, slow, voice=voice, rate=slower(rate)).items():
            self.files[_SLOW_KEY + text] = path
        audio = list(dict.fromkeys(audio))
        if audio:
            rec_dir = _recordings_dir(tts)
            for src in audio:
                self.files[_AUDIO_KEY + src] = recording_file(src, rec_dir)
        self.pcm = {text: _read_pcm(path) for text, path in self.files.items()}
        self._batches: dict[tuple[str, ...], Path] = {}

    def _pcm(self, text: str) -> bytes:
        if text.startswith(_AUDIO_KEY) and text not in self.pcm:
            src = text[len(_AUDIO_KEY):]
            self.files[text] = recording_file(src, _recordings_dir(self.tts))
            self.pcm[text] = _read_pcm(self.files[text])
        if text not in self.pcm:  # not foreseen before dialling: render now
            log.warning("prompt not pre-rendered, rendering during the call: %s", text)
            if text.startswith(_SLOW_KEY):
                path = self.tts.render(text[len(_SLOW_KEY):], **self.slow_kw)
            else:
                path = self.tts.render(text, **self.kw)
            self.files[text] = Path(path)
            self.pcm[text] = _read_pcm(self.files[text])
        return self.pcm[text]

    def batch(self, texts: tuple[str, ...]) -> tuple[Path, float]:
        """A WAV saying *texts* back to back, and its duration in seconds."""
        if len(texts) == 1:
            pcm = self._pcm(texts[0])
            return self.files[texts[0]], len(pcm) / 2 / defaults.SAMPLE_RATE
        path = self._batches.get(texts)
        pcm = b"".join(self._pcm(t) for t in texts)
        if path is None:
            path = self.workdir / f"batch-{len(self._batches)}.wav"
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(defaults.SAMPLE_RATE)
                w.writeframes(pcm)
            self._batches[texts] = path
        return path, len(pcm) / 2 / defaults.SAMPLE_RATE

    def duration(self, text: str) -> float:
        return len(self._pcm(text)) / 2 / defaults.SAMPLE_RATE


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
    slow = prompt_files(tts, engine.slow_prompts(), voice=script.voice, rate=slower(rate))
    return len(files) + len(slow)
