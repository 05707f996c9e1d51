"""Prompts: Chinese text → 8 kHz mono 16-bit WAV, rendered once and cached by content.

``make_tts(settings)`` gives a :class:`PromptRenderer`. Its engine chain is the configured engine
followed by the offline ``espeak`` one: when edge-tts cannot reach its service the prompt is made
by espeak-ng instead and a warning is logged once. Every prompt is checked (length, level) before
it is cached, so a 0-byte or silent file never reaches a call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from callbot import defaults
from callbot.exceptions import MissingExtraError, SpeechError

log = logging.getLogger(__name__)

_PCT = re.compile(r"^([+-]?)(\d{1,3})%$")
_HAN = re.compile(r"[\u3400-\u9fff]")
EDGE_RETRY_S = 300.0
"""After edge-tts failed, how long the renderer uses the fallback before trying edge again (s)."""
SHARED_MISS_S = 60.0
"""A prompt the shared cache did not have is not asked for again for this long (s): with edge
down every prompt of every contact asked Redis for its edge copy first (the dispatcher: ~40
GETs a contact, all misses); one another host publishes meanwhile is used from then on."""


@functools.lru_cache(maxsize=256)
def _percent(value: str | int | None, what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    m = _PCT.match(value.strip())
    if not m:
        raise ValueError(f"{what} 应写成 +10% / -20% (a signed percentage), got {value!r}")
    return int(m.group(2)) * (-1 if m.group(1) == "-" else 1)


def _signed(pct: int) -> str:
    return f"{pct:+d}%"


class TtsEngine(Protocol):
    """One speech synthesiser: writes an audible 8 kHz mono 16-bit WAV of *text* to *dst*."""

    name: str
    default_voice: str

    def synthesize(self, text: str, dst: Path, *, voice: str, rate: int, volume: int) -> None:
        ...


class EspeakTts:
    """Offline espeak-ng (Debian package), Mandarin read from pinyin with tone digits."""

    name = "espeak"
    default_voice = defaults.TTS_VOICE_ESPEAK

    def __init__(self) -> None:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise SpeechError("espeak-ng 未安装 (not installed): apt-get install espeak-ng")
        self.binary: str = binary

    @staticmethod
    def to_pinyin(text: str) -> str:
        """Chinese characters → pinyin with tone digits (sandhi applied); other text unchanged.

        espeak-ng's ``cmn-latn-pinyin`` voice reads these more accurately than the characters."""
        if not _HAN.search(text):
            return text
        try:
            from pypinyin import Style, lazy_pinyin
        except ImportError as exc:
            raise MissingExtraError("pypinyin", "speech") from exc
        syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True,
                                tone_sandhi=True)
        return " ".join(s.strip() for s in syllables if s.strip())

    def synthesize(self, text: str, dst: Path, *, voice: str, rate: int, volume: int) -> None:
        wpm = self._wpm(rate)  # ~3.5 syllables/s at +0%
        amp = max(10, min(200, round(100 * (1 + volume / 100))))
        spoken = self.to_pinyin(text)
        from callbot.speech import native

        # the libraries when present (callbot.speech.native: the same samples without an
        # espeak-ng and a sox program per prompt), else the programs
        client = native.espeak(voice)
        if client is not None:
            try:
                pcm = client.pcm(spoken, voice, wpm, amp)
            except OSError as exc:
                native.espeak_failed(exc)
            else:
                lib = native.sox()
                if lib is not None:
                    try:
                        lib.to_8k(native.wav_bytes(pcm, native.ESPEAK_RATE), dst, -3)
                        return
                    except OSError:
                        log.warning("libsox failed on a prompt; using the sox program",
                                    exc_info=True)
                with tempfile.TemporaryDirectory(prefix="callbot-espeak-") as tmp:
                    raw = Path(tmp) / "raw.wav"
                    raw.write_bytes(native.wav_bytes(pcm, native.ESPEAK_RATE))
                    from callbot.speech.audio import convert_to_8k

                    convert_to_8k(raw, dst, gain_db=-3)
                return
        with tempfile.TemporaryDirectory(prefix="callbot-espeak-") as tmp:
            raw = Path(tmp) / "raw.wav"
            cmd = [self.binary, "-v", voice, "-s", str(wpm), "-a", str(amp), "-w", str(raw),
                   "--", spoken]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if proc.returncode != 0 or not raw.is_file():
                raise SpeechError(f"espeak-ng 失败 (failed): {proc.stderr.strip() or proc.returncode}")
            from callbot.speech.audio import convert_to_8k

            convert_to_8k(raw, dst, gain_db=-3)

    @staticmethod
    def _wpm(rate: int) -> int:
        return max(80, min(450, round(190 * (1 + rate / 100))))

    def derive(self, src: Path, dst: Path, *, rate: int, from_rate: int) -> None:
        """*dst*: the prompt *src* (rendered at *from_rate*) said at *rate*, stretched by sox's
        ``tempo`` (WSOLA, speech mode) from the 8 kHz copy instead of a second espeak-ng run
        (the slowed copy of each contact's greeting: one sox run, ~5 CPU-ms, against espeak +
        sox's ~24)."""
        from callbot.speech.audio import _sox

        factor = self._wpm(rate) / self._wpm(from_rate)
        from callbot.speech import native

        lib = native.sox()  # in this process when libsox is there: the same file, no program
        if lib is not None:
            try:
                lib.tempo(src, dst, float(f"{factor:.4f}"))
                return
            except OSError:
                log.warning("libsox failed on a slowed prompt; using the sox program",
                            exc_info=True)
        proc = subprocess.run([_sox(), "-R", "-V1", str(src), str(dst), "tempo", "-s",
                               f"{factor:.4f}"], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise SpeechError(f"无法放慢提示音 (cannot slow the prompt down) {src}: "
                              f"{proc.stderr.strip() or proc.returncode}")


class EdgeTts:
    """Microsoft Edge online voices through edge-tts; MP3 decoded to 8 kHz WAV with sox."""

    name = "edge"
    default_voice = defaults.TTS_VOICE_EDGE

    def __init__(self, timeout_s: float = defaults.TTS_EDGE_TIMEOUT_S):
        import importlib.util

        # imported at the first render: a line worker whose prompts are all rendered ahead
        # never loads edge-tts and aiohttp (~10 MB per process)
        if importlib.util.find_spec("edge_tts") is None:
            raise MissingExtraError("edge-tts", "speech")
        self.timeout_s = timeout_s

    def synthesize(self, text: str, dst: Path, *, voice: str, rate: int, volume: int) -> None:
        import asyncio  # here, not at the top: asyncio and ssl are 5.4 MB of every line process

        import edge_tts

        from callbot.speech.audio import convert_to_8k

        with tempfile.TemporaryDirectory(prefix="callbot-edge-") as tmp:
            mp3 = Path(tmp) / "edge.mp3"  # a failed run leaves a 0-byte file: never outside tmp
            comm = edge_tts.Communicate(text, voice, rate=_signed(rate), volume=_signed(volume))
            try:
                asyncio.run(asyncio.wait_for(comm.save(str(mp3)), self.timeout_s))
            except Exception as exc:  # aiohttp, websocket, edge_tts and timeout errors alike
                raise SpeechError(f"edge-tts 失败 (service unreachable?): {type(exc).__name__}: {exc}") from exc
            if not mp3.is_file() or mp3.stat().st_size == 0:
                raise SpeechError("edge-tts 没有返回音频 (no audio received)")
            convert_to_8k(mp3, dst, gain_db=-3)


ENGINES = {"edge": EdgeTts, "espeak": EspeakTts}



def synthesize_file(engine: TtsEngine, text: str, path: Path, voice: str, rate: int,
                    volume: int) -> None:
    """Synthesise *text* with *engine* into *path*, atomically (a temporary file checked as a
    prompt, then renamed: a cached file is always complete). Raises ``SpeechError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{_unique()}.tmp.wav")
    from callbot.speech.audio import check_prompt

    try:
        engine.synthesize(text, tmp, voice=voice, rate=rate, volume=volume)
        check_prompt(tmp)
        os.replace(tmp, path)  # atomic: a cached file is always complete
    finally:
        tmp.unlink(missing_ok=True)


def _derive_file(derive: Any, src: Path, path: Path, *, rate: int, from_rate: int) -> None:
    """``engine.derive`` into *path*, atomically and checked (as ``synthesize_file``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{_unique()}.tmp.wav")
    from callbot.speech.audio import check_prompt

    try:
        derive(src, tmp, rate=rate, from_rate=from_rate)
        check_prompt(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@functools.lru_cache(maxsize=8192)
def _cache_name(engine: str, text: str, voice: str, rate: int, volume: int) -> str:
    """A prompt's file in the cache, below the cache dir (the shared prompts of a campaign are
    looked up again for every contact: the digest is kept)."""
    key = json.dumps([engine, voice, rate, volume, text], ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{engine}/{digest[:2]}/{digest}.wav"


class PromptRenderer:
    """Renders prompts through an engine chain into a content-addressed cache of 8 kHz WAVs."""

    def __init__(self, engines: list[TtsEngine], cache_dir: Path, *, voice: str | None = None,
                 rate: str = defaults.TTS_RATE, volume: str = defaults.TTS_VOLUME,
                 shared: object = None):
        if not engines:
            raise SpeechError("no TTS engine")
        self.engines = engines
        self.cache_dir = cache_dir
        self.shared = shared
        # locks and "engine down" marks, per host, outside the cache (which holds only prompts)
        self.run_dir = Path(tempfile.gettempdir()) / ("callbot-tts-" + hashlib.sha1(
            str(Path(cache_dir).resolve()).encode()).hexdigest()[:12])
        """A Redis connection holding rendered prompts for every host (``callbot:tts:…``, a
        week): what the dispatcher renders ahead, a line worker on any host finds. None: this
        host's cache only."""
        self.voice = voice
        """Voice of the preferred engine (None: its default)."""
        self.rate = rate
        self.volume = volume
        self._down_until: dict[str, float] = {}
        self._warned: set[str] = set()
        self._missing: dict[str, float] = {}
        """Shared-cache keys found missing → when (monotonic; SHARED_MISS_S)."""

    @property
    def engine(self) -> str:
        """Name of the first (preferred) engine."""
        return self.engines[0].name

    def cache_path(self, engine: TtsEngine, text: str, voice: str, rate: int, volume: int) -> Path:
        """Where the prompt for these inputs lives (it may not exist yet)."""
        return self.cache_dir / _cache_name(engine.name, text, voice, rate, volume)

    derives_slower = True
    """``render`` takes ``from_rate``: a slowed copy is derived from the prompt at that rate."""

    def render(self, text: str, voice: str | None = None, rate: str | None = None,
               from_rate: str | None = None) -> Path:
        """The WAV of *text*: from the cache, else synthesised by the first engine that works.

        *voice* applies to the preferred engine (fallbacks use their own default voice).
        *from_rate*: *text* at *rate* is a slowed copy of *text* at *from_rate* — an engine that
        can (espeak) stretches that render (made first when missing) instead of synthesising
        again."""
        text = text.strip()
        if not text:
            raise SpeechError("提示文字为空 (empty prompt text)")
        r = _percent(rate or self.rate, "rate")
        v = _percent(self.volume, "volume")
        r0 = None if from_rate is None else _percent(from_rate, "rate")
        errors = []
        for i, engine in enumerate(self.engines):
            use_voice = (voice or self.voice) if i == 0 else None
            use_voice = use_voice or engine.default_voice
            # a cache hit in strings, not pathlib (the dispatcher looks up ~40 prompts an
            # attempt, two engines each: pathlib was ~3 CPU-ms of them)
            name = _cache_name(engine.name, text, use_voice, r, v)
            where = self._cache_str + name
            if os.path.isfile(where) or self._fetch(Path(where), name):
                return Path(where)
            path = Path(where)
            if self._down_until.get(engine.name, 0) > time.monotonic() or self._down(engine):
                errors.append(f"{engine.name}: recently failed")
                continue
            try:
                # one render per prompt on a host, however many processes ask at once
                derive = getattr(engine, "derive", None) if r0 not in (None, r) else None
                if derive is not None:
                    base = self.render(text, voice=voice, rate=from_rate)
                    if base.parent.parent.name != engine.name:  # made by a fallback engine
                        derive = None
                with _file_lock(self.run_dir / f"{path.stem}.lock"):
                    if not path.is_file():
                        if derive is not None and r0 is not None:
                            _derive_file(derive, base, path, rate=r, from_rate=r0)
                        else:
                            self._synthesize(engine, text, path, use_voice, r, v)
                self._publish(path)
                return path
            except SpeechError as exc:
                errors.append(f"{engine.name}: {exc}")
                if i + 1 < len(self.engines):
                    self._down_until[engine.name] = time.monotonic() + EDGE_RETRY_S
                    self._mark_down(engine)
                    if engine.name not in self._warned:
                        self._warned.add(engine.name)
                        log.warning("TTS 引擎 %s 不可用，改用 %s (engine failed, falling back): %s",
                                    engine.name, self.engines[i + 1].name, exc)
        raise SpeechError(f"无法生成提示音 (no engine could render {text!r}): " + "; ".join(errors))

    def _synthesize(self, engine: TtsEngine, text: str, path: Path, voice: str, rate: int,
                    volume: int) -> None:
        """Render a missing prompt into *path* (``ChildRenderer`` does it in a child process)."""
        synthesize_file(engine, text, path, voice, rate, volume)

    def _down_file(self, engine: TtsEngine) -> Path:
        return self.run_dir / f"{engine.name}.down"

    def _down(self, engine: TtsEngine) -> bool:
        """Another process of this host saw *engine* fail within EDGE_RETRY_S: skip it too (34
        line processes each waiting on a dead service one after another took minutes)."""
        try:
            return time.time() - self._down_file(engine).stat().st_mtime < EDGE_RETRY_S
        except OSError:
            return False

    def _mark_down(self, engine: TtsEngine) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._down_file(engine).touch()
        except OSError:
            pass

    @property
    def _cache_str(self) -> str:
        """The cache dir as a string ending in a separator (prompt names are joined to it)."""
        return os.path.join(str(self.cache_dir), "")

    def _key(self, path: Path) -> str:
        return "callbot:tts:" + path.relative_to(self.cache_dir).as_posix()

    def _fetch(self, path: Path, name: str | None = None) -> bool:
        """Copy a prompt another host rendered (shared cache) into this host's cache (*name*:
        its name below the cache dir, when known)."""
        if self.shared is None:
            return False
        key = "callbot:tts:" + name if name is not None else self._key(path)
        now = time.monotonic()
        if now - self._missing.get(key, -SHARED_MISS_S) < SHARED_MISS_S:
            return False
        try:
            data = self.shared.get(key)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the shared cache is an optimisation
            log.warning("shared prompt cache unreachable", exc_info=True)
            return False
        if not data:
            if len(self._missing) > 50_000:
                self._missing.clear()
            self._missing[key] = now
            return False
        self._missing.pop(key, None)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{_unique()}.tmp.wav")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return True

    def _publish(self, path: Path) -> None:
        if self.shared is None:
            return
        try:
            self.shared.set(self._key(path), path.read_bytes(),  # type: ignore[attr-defined]
                            ex=defaults.TTS_SHARED_TTL_S, nx=True)
        except Exception:  # noqa: BLE001
            log.warning("could not share a rendered prompt", exc_info=True)

    def prerender(self, texts: Iterable[str]) -> dict[str, Path]:
        """Render every prompt of a campaign before dialling; text → WAV path."""
        return {t: self.render(t) for t in dict.fromkeys(texts)}


TTS_PERSONAL = ("online", "offline")
"""A campaign's ``tts_personal``: ``online`` — every prompt goes to the preferred engine (edge:
Microsoft's online service, names included); ``offline`` — the parts of a prompt that come from
the contact (her name, address, …) are synthesised on this box by espeak-ng and only the rest
goes to the preferred engine, the parts joined into one prompt."""

TITLES = ("阿姨", "叔叔", "先生", "女士", "小姐", "大爷", "大妈", "大娘", "奶奶", "爷爷", "老师",
          "师傅", "同志", "老人", "伯伯", "婆婆", "阿婆", "阿公")
"""Forms of address after a surname (张阿姨): a prompt that says only the surname of a resident
still says who she is."""

_SPEAKABLE = re.compile(r"[\w\u3400-\u9fff]")


def personal_values(variables: dict[str, object]) -> list[str]:
    """What of a contact may appear in her prompts: every field's value as text (name, address,
    note, phone, the list's own columns), the phone's last four digits, and the surname with a
    form of address (张阿姨). Longest first."""
    out: set[str] = set()
    for key, value in variables.items():
        if value is None or isinstance(value, bool):
            continue
        text = str(value).strip()
        if not text:
            continue
        out.add(text)
        if key in ("phone", "电话", "手机") and len(re.sub(r"\D", "", text)) >= 4:
            out.add(re.sub(r"\D", "", text)[-4:])
        if key in ("name", "姓名") and len(text) >= 2 and _HAN.match(text):
            out.update(text[0] + t for t in TITLES)
    return sorted(out, key=lambda v: (-len(v), v))


def split_personal(text: str, personal: Iterable[str]) -> list[tuple[str, bool]]:
    """*text* cut into ``(part, is_personal)`` runs: each occurrence of a personal value (longest
    first) is its own part."""
    values = [v for v in personal if v]
    if not values:
        return [(text, False)]
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
    parts: list[tuple[str, bool]] = []
    at = 0
    for m in pattern.finditer(text):
        if m.start() > at:
            parts.append((text[at:m.start()], False))
        parts.append((m.group(0), True))
        at = m.end()
    if at < len(text):
        parts.append((text[at:], False))
    return parts


class PersonalOffline:
    """A renderer that keeps a contact's personal data on this box (``tts_personal: offline``):
    the parts of a prompt that come from the contact are rendered by *offline* (espeak-ng), the
    rest by *inner* (the preferred engine, edge), and the parts joined into one WAV (cached by
    the parts' files). A prompt with nothing personal in it is *inner*'s own."""

    def __init__(self, inner: object, offline: object, personal: Iterable[str]):
        self.inner = inner
        self.offline = offline
        self.personal = list(personal)

    @property
    def cache_dir(self) -> Path:
        return Path(self.inner.cache_dir)  # type: ignore[attr-defined]

    derives_slower = True

    def render(self, text: str, voice: str | None = None, rate: str | None = None,
               from_rate: str | None = None) -> Path:
        text = text.strip()
        parts = split_personal(text, self.personal)
        slow = {"from_rate": from_rate} if from_rate is not None else {}
        if not any(mine for _, mine in parts):
            return Path(self.inner.render(text, voice=voice, rate=rate, **slow))  # type: ignore[attr-defined]
        files: list[Path] = []
        for part, mine in parts:
            if not _SPEAKABLE.search(part):
                continue  # punctuation between parts: nothing to say (edge refuses it)
            if mine:  # never the preferred engine's voice name: espeak has its own
                files.append(Path(self.offline.render(part, rate=rate, **slow)))  # type: ignore[attr-defined]
            else:
                files.append(Path(self.inner.render(part.strip(), voice=voice,  # type: ignore[attr-defined]
                                                    rate=rate, **slow)))
        if len(files) == 1:
            return files[0]
        return _joined(files, self.cache_dir / "joined")

    def prerender(self, texts: Iterable[str]) -> dict[str, Path]:
        return {t: self.render(t) for t in dict.fromkeys(texts)}


def _joined(files: list[Path], folder: Path) -> Path:
    """One WAV saying *files* back to back (8 kHz mono 16-bit), cached by the files' names."""
    import wave

    digest = hashlib.sha256("\0".join(str(f) for f in files).encode()).hexdigest()
    dst = folder / digest[:2] / f"{digest}.wav"
    if dst.is_file():
        return dst
    from callbot.speech.audio import read_8k

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{_unique()}.tmp.wav")
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(defaults.SAMPLE_RATE)
            for f in files:
                w.writeframes(read_8k(f))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def keep_personal_offline(tts: object, variables: dict[str, object],
                          offline: object = None) -> object:
    """*tts* as ``tts_personal: offline`` wants it for a call to the contact of *variables*;
    *tts* itself when its preferred engine is offline already."""
    engines = getattr(tts, "engines", None) or getattr(getattr(tts, "inner", None), "engines",
                                                        None)
    if engines and engines[0].name == "espeak":
        return tts
    if offline is None:
        cache = Path(tts.cache_dir)  # type: ignore[attr-defined]
        offline = PromptRenderer([EspeakTts()], cache, shared=getattr(tts, "shared", None),
                                 rate=getattr(tts, "rate", defaults.TTS_RATE),
                                 volume=getattr(tts, "volume", defaults.TTS_VOLUME))
    return PersonalOffline(tts, offline, personal_values(variables))


class _file_lock:  # noqa: N801 - used as a context manager like a function
    """An exclusive lock on the file *path* across the processes of a host (fcntl.flock)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def make_tts(settings=None, *, engine: str | None = None, shared=None) -> PromptRenderer:
    """The renderer for *settings*; espeak is always the last resort.

    Settings used: ``tts_engine`` (CALLBOT_TTS_ENGINE), the cache dir, and from the environment
    CALLBOT_TTS_VOICE, CALLBOT_TTS_RATE (e.g. ``-10%``), CALLBOT_TTS_VOLUME."""
    if settings is None:
        from callbot.config import load_settings

        settings = load_settings()
    name = engine or settings.tts_engine
    if name not in ENGINES:
        raise SpeechError(f"未知的 TTS 引擎 {name!r} (unknown); use one of {', '.join(ENGINES)}")
    chain: list[TtsEngine] = []
    for n in dict.fromkeys([name, "espeak"]):
        try:
            chain.append(ENGINES[n]())
        except (SpeechError, MissingExtraError) as exc:
            log.warning("TTS 引擎 %s 不可用 (unavailable): %s", n, exc)
    if not chain:
        raise SpeechError("没有可用的 TTS 引擎 (no TTS engine available: install espeak-ng)")
    extra = getattr(settings, "extra", {}) or {}
    return PromptRenderer(chain, settings.cache_dir / "tts",
                          voice=extra.get("tts_voice") if chain[0].name == name else None,
                          rate=extra.get("tts_rate", defaults.TTS_RATE),
                          volume=extra.get("tts_volume", defaults.TTS_VOLUME), shared=shared)


def _unique() -> str:
    """A temporary-file tag no other process or thread uses at the same time."""
    return f"{os.getpid()}-{threading.get_ident()}"


def normalise_recording(src: str | Path, dst: str | Path) -> Path:
    """A staff recording (WAV/MP3, any rate/channels) → 8 kHz mono 16-bit WAV at *dst*, checked."""
    from callbot.speech.audio import check_prompt, convert_to_8k

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    raw = dst.with_name(f".{dst.stem}.{_unique()}.raw.wav")
    tmp = dst.with_name(f".{dst.stem}.{_unique()}.tmp.wav")
    try:
        # the level is checked as recorded: normalising first would turn a muted microphone's
        # hiss into a loud prompt that passes the check
        convert_to_8k(src, raw)
        check_prompt(raw)
        convert_to_8k(raw, tmp, gain_db=-3)
        check_prompt(tmp)
        os.replace(tmp, dst)
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return dst
