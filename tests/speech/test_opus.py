"""Ogg Opus of stored speech: libopus through ctypes with this module's own Ogg pages, read back
by libsndfile as the audio that went in (libogg drops a page whose CRC is wrong: the length
check catches a wrong CRC, measured by corrupting one)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from callbot.speech import opus

REPLIES = Path(__file__).resolve().parents[2] / "callbot" / "data" / "replies"


def _clip(name: str = "xuyao.wav") -> bytes:
    with wave.open(str(REPLIES / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return w.readframes(w.getnframes())


def _similarity(a: bytes, b: bytes) -> float:
    x = np.frombuffer(a, "<i2").astype(float)
    y = np.frombuffer(b, "<i2").astype(float)
    return float(np.corrcoef(x, y)[0, 1])


needs_libopus = pytest.mark.skipif(opus._libopus() is None, reason="no libopus on this host")


@needs_libopus
@pytest.mark.parametrize("seconds", [0.013, 0.5, 75.0])
def test_libopus_encoding_decodes_to_the_same_audio(seconds: float) -> None:
    clip = _clip()
    n = int(8000 * seconds) * 2
    pcm = (clip * (n // len(clip) + 1))[:n]  # 75 s: past one page's 255 packets, many pages
    data = opus.encode(pcm)
    assert data.startswith(b"OggS")
    assert opus.VENDOR in data[:200]  # libopus here, not libsndfile's writer
    back, rate = opus.decode(data)
    assert rate == 8000
    assert len(back) == len(pcm)  # the pre-skip and the end granule trim it exactly
    if seconds >= 0.5:
        assert _similarity(pcm, back) > 0.9
        # ~10.5 kbit/s at the default level, headers included
        assert len(data) < 300 + 1600 * seconds


@needs_libopus
def test_a_lower_level_is_a_higher_bitrate_as_with_libsndfile() -> None:
    pcm = _clip("liangge.wav") * 4
    assert len(opus.encode(pcm, level=0.9)) > 1.5 * len(opus.encode(pcm, level=0.98))
    assert opus.bitrate_for(0.98) == 11000 and opus.bitrate_for(0.0) == 256000


def test_without_libopus_libsndfile_encodes(monkeypatch) -> None:
    monkeypatch.setattr(opus, "_libopus", lambda: None)
    pcm = _clip()
    data = opus.encode(pcm)
    assert opus.VENDOR not in data
    back, rate = opus.decode(data)
    assert rate == 8000 and len(back) == len(pcm)
