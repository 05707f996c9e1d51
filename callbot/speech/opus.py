"""Ogg Opus for stored speech (reply audio, whole calls): 8 kHz speech in a few kB/s.

Its own module so that both ``callbot.recordings`` (which stores the audio, and asks the host's
speech process to compress it) and ``callbot.speech.service`` (which compresses it for the line
processes) use it without importing each other. numpy and libsndfile load only when called.
"""

from __future__ import annotations

import io
from typing import Any

from callbot import defaults
from callbot.exceptions import MissingExtraError, RecordingError


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # the speech extra (line workers) has it
        raise MissingExtraError("soundfile", "speech") from exc
    return soundfile


def encode(pcm: bytes, rate: int = defaults.SAMPLE_RATE,
           level: float = defaults.RECORDING_OPUS_LEVEL) -> bytes:
    """16-bit mono PCM → Ogg Opus bytes, in this process."""
    import numpy as np

    if not pcm:
        raise RecordingError("没有可保存的声音 (no audio to store)")
    sf = _soundfile()
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="OGG", subtype="OPUS", compression_level=level)
    return buf.getvalue()


def decode(data: bytes) -> tuple[bytes, int]:
    """Stored audio → (16-bit mono PCM, sample rate)."""
    sf = _soundfile()
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    if samples.ndim > 1:
        samples = samples[:, 0]
    return samples.astype("<i2").tobytes(), int(rate)
