"""Small audio helpers for 8 kHz 16-bit mono PCM (numpy only; no pjsua2)."""

from __future__ import annotations

import os
import wave

import numpy as np

from callbot import defaults


def read_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """Samples of a 16-bit mono WAV as int16; raises ValueError for another format."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: need 16-bit mono PCM WAV, got {w.getsampwidth() * 8}-bit "
                             f"{w.getnchannels()} channels")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def wav_rate(path: str | os.PathLike[str]) -> int:
    """The sample rate of a WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getframerate()


def write_wav(path: str | os.PathLike[str], pcm: bytes | np.ndarray,
              rate: int = defaults.SAMPLE_RATE) -> None:
    """Write 16-bit mono PCM (bytes or an int16 array) to a WAV file."""
    data = pcm.astype("<i2").tobytes() if isinstance(pcm, np.ndarray) else pcm
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


def rms(pcm: bytes | np.ndarray) -> float:
    """Root mean square of 16-bit samples (0 … 32768)."""
    a = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
    if a.size == 0:
        return 0.0
    x = a.astype(np.float32)
    return float(np.sqrt(np.mean(x * x)))


def best_match(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Where ``needle`` sits in ``haystack``: (sample offset, normalised correlation 0…1)."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    if h.size < n.size or n.size == 0:
        return 0, 0.0
    n = n - n.mean()
    size = 1 << int(np.ceil(np.log2(h.size + n.size)))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)
    corr = corr[: h.size - n.size + 1]
    c1 = np.concatenate(([0.0], np.cumsum(h)))
    c2 = np.concatenate(([0.0], np.cumsum(h * h)))
    m = n.size
    win_sum = c1[m:] - c1[:-m]
    win_sq = c2[m:] - c2[:-m]
    win_var = np.maximum(win_sq - win_sum * win_sum / m, 1e-9)
    score = corr / (np.sqrt(win_var) * np.sqrt(np.sum(n * n)) + 1e-9)
    i = int(np.argmax(score))
    return i, float(score[i])


def match_chunks(haystack: np.ndarray, needle: np.ndarray, chunk_s: float = 0.4,
                 rate: int = defaults.SAMPLE_RATE) -> list[tuple[int, float]]:
    """``best_match`` of each ``chunk_s`` piece of ``needle`` (robust to the frames a jitter
    buffer drops or repeats): [(offset, correlation), ...] in needle order."""
    n = int(chunk_s * rate)
    out = []
    for i in range(0, needle.size - n + 1, n):
        piece = needle[i:i + n]
        if rms(piece) < 100:  # skip pauses: nothing to recognise
            continue
        out.append(best_match(haystack, piece))
    return out


def contains(haystack: np.ndarray, needle: np.ndarray) -> tuple[bool, int, float]:
    """Does ``haystack`` hold ``needle`` (after a phone line)? (yes, start offset, median corr).
    Chunks must match well (median > 0.8) and appear in order within ~1.5× its length."""
    chunks = match_chunks(haystack, needle)
    if not chunks:
        return False, 0, 0.0
    offsets = [o for o, _ in chunks]
    corr = float(np.median([c for _, c in chunks]))
    ordered = all(b >= a for a, b in zip(offsets, offsets[1:], strict=False))
    compact = offsets[-1] - offsets[0] <= 1.5 * needle.size
    return corr > 0.8 and ordered and compact, offsets[0], corr
