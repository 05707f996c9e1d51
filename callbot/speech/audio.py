"""Telephone audio helpers: WAV I/O, conversion to 8 kHz mono 16-bit, frames, levels, 2× upsampling.

Files are converted with sox (Debian ``sox`` + ``libsox-fmt-mp3`` for MP3); frames in memory with numpy.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callbot import defaults
from callbot.exceptions import SpeechError

RATE = defaults.SAMPLE_RATE
FRAME_BYTES = defaults.FRAME_BYTES


@dataclass(frozen=True)
class AudioInfo:
    """What a telephone prompt needs checking: format, length and loudness."""

    rate: int
    channels: int
    sample_width: int
    duration_s: float
    rms_dbfs: float


def _sox() -> str:
    """The sox binary. Callers pass ``-R``: sox dithers when it resamples, with a fresh random
    seed per run unless told to repeat itself, and the same recording must always give the same
    samples (``callbot listen`` on one file must hear one thing; prompt renders are comparable)."""
    sox = shutil.which("sox")
    if sox is None:
        raise SpeechError("sox 未安装 (sox is not installed): apt-get install sox libsox-fmt-mp3")
    return sox


def read_pcm(path: str | Path) -> tuple[bytes, int]:
    """16-bit mono PCM bytes and rate of a WAV file as stored (any rate; not resampled)."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getcomptype() == "NONE":
                return w.readframes(w.getnframes()), w.getframerate()
    except (wave.Error, EOFError) as exc:
        if not path.is_file():
            raise SpeechError(f"音频文件不存在 (no such file): {path}") from exc
    except FileNotFoundError as exc:
        raise SpeechError(f"音频文件不存在 (no such file): {path}") from exc
    # not plain 16-bit mono PCM: let sox read it at its own rate
    return _sox_raw(path, rate=None)


def _sox_raw(path: Path, rate: int | None) -> tuple[bytes, int]:
    if rate is None:
        rate = _sox_rate(path)
    cmd = [_sox(), "-R", "-V1", str(path), "-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1",
           "-r", str(rate), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip()
        raise SpeechError(f"无法读取音频 (cannot decode audio) {path}: {msg}")
    return proc.stdout, rate


def _sox_rate(path: Path) -> int:
    proc = subprocess.run([_sox(), "--i", "-r", str(path)], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SpeechError(f"无法读取音频 (cannot decode audio) {path}: {proc.stderr.strip()}")
    return int(float(proc.stdout.strip()))


def read_8k(path: str | Path) -> bytes:
    """Any audio file sox can read → 8 kHz mono 16-bit PCM bytes."""
    pcm, rate = read_pcm(path)
    if rate == RATE:
        return pcm
    return _sox_raw(Path(path), rate=RATE)[0]


def write_wav(path: str | Path, pcm: bytes, rate: int = RATE) -> Path:
    """Write 16-bit mono PCM as a WAV file."""
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def convert_to_8k(src: str | Path, dst: str | Path, *, gain_db: float | None = None) -> Path:
    """Convert any file sox can read (WAV, MP3, ...) to an 8 kHz mono 16-bit WAV at *dst*."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise SpeechError(f"音频文件不存在 (no such file): {src}")
    cmd = [_sox(), "-R", "-V1", str(src), "-e", "signed-integer", "-b", "16", "-c", "1", "-r", str(RATE),
           str(dst)]
    cmd += ["highpass", "100"]  # phone band: drop rumble below 100 Hz
    if gain_db is not None:
        cmd += ["gain", "-n", str(gain_db)]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        dst.unlink(missing_ok=True)
        msg = proc.stderr.decode(errors="replace").strip()
        raise SpeechError(f"无法转换音频 (cannot convert audio) {src}: {msg}")
    return dst


def info(path: str | Path) -> AudioInfo:
    """Format, duration and RMS level of a WAV file."""
    with wave.open(str(path), "rb") as w:
        rate, ch, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
        data = w.readframes(n)
    level = rms_dbfs(data) if width == 2 else float("nan")
    return AudioInfo(rate, ch, width, n / rate if rate else 0.0, level)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of 16-bit PCM in dBFS (-inf for digital silence)."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    if x.size == 0:
        return float("-inf")
    rms = math.sqrt(float(np.mean(x * x)))
    return 20 * math.log10(rms / 32768) if rms > 0 else float("-inf")


def check_prompt(path: str | Path, *, min_duration_s: float = defaults.TTS_MIN_DURATION_S,
                 min_dbfs: float = defaults.TTS_MIN_DBFS) -> AudioInfo:
    """Raise SpeechError unless *path* is an audible 8 kHz mono 16-bit prompt."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size <= 44:
        raise SpeechError(f"提示音为空 (empty prompt file): {path}")
    try:
        i = info(path)
    except (wave.Error, EOFError) as exc:
        raise SpeechError(f"提示音不是 WAV (not a WAV file): {path}: {exc}") from exc
    if (i.rate, i.channels, i.sample_width) != (RATE, 1, 2):
        raise SpeechError(f"提示音格式不对 (want 8 kHz mono 16-bit): {path}: {i}")
    if i.duration_s < min_duration_s:
        raise SpeechError(f"提示音太短 (prompt too short, {i.duration_s:.2f}s): {path}")
    if not i.rms_dbfs >= min_dbfs:
        raise SpeechError(f"提示音无声 (prompt is silent, {i.rms_dbfs:.1f} dBFS): {path}")
    return i


def line_noise(pcm: bytes, *, gain: float = 1.0, noise_dbfs: float | None = None,
               seed: int = 0) -> bytes:
    """*pcm* as a worse phone line would carry it: scaled by *gain* (clipped at full scale) with
    white noise at *noise_dbfs* RMS added; the same *seed* gives the same samples."""
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64) * gain
    if noise_dbfs is not None:
        rng = np.random.default_rng(seed)
        x += rng.normal(0.0, 32768 * 10 ** (noise_dbfs / 20), len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16).tobytes()


def frames(pcm: bytes, frame_bytes: int = FRAME_BYTES, *, pad: bool = True) -> Iterator[bytes]:
    """Cut PCM into frames (20 ms at 8 kHz by default); the last one zero-padded when *pad*."""
    for i in range(0, len(pcm), frame_bytes):
        frame = pcm[i:i + frame_bytes]
        if len(frame) < frame_bytes:
            if not pad:
                return
            frame = frame + b"\0" * (frame_bytes - len(frame))
        yield frame


def _halfband(taps: int = 31) -> np.ndarray:
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(n / 2) * np.kaiser(taps, 8.0)
    h = h / h.sum() * 2
    return np.append(h, 0.0).astype(np.float32)  # even length: both phases get the same taps


_H = _halfband()


class Upsampler2x:
    """Streaming 8 → 16 kHz upsampler (windowed-sinc interpolation) keeping state across frames."""

    def __init__(self) -> None:
        self._phases = (_H[0::2].copy(), _H[1::2].copy())
        self._hist = np.zeros(len(self._phases[0]) - 1, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 samples at 8 kHz → twice as many at 16 kHz (delayed by half the filter)."""
        buf = np.concatenate([self._hist, x.astype(np.float32, copy=False)])
        self._hist = buf[len(buf) - len(self._hist):]
        out = np.empty(2 * len(x), dtype=np.float32)
        out[0::2] = np.convolve(buf, self._phases[0], mode="valid")
        out[1::2] = np.convolve(buf, self._phases[1], mode="valid")
        return out


def pcm_to_float(pcm: bytes) -> np.ndarray:
    """16-bit PCM bytes → float32 in [-1, 1)."""
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
