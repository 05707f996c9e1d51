"""Endpointing: CPU per 20 ms frame of a call's session path (``_LiveCall.on_frame`` →
``EndpointingStream.accept`` → webrtcvad), without a phone or a speech process.

Run: ``.venv/bin/python bench/endpointing.py [--reps 20] [--runs 3]``. The callee's audio is
3 s of silence then three reply clips of callbot/data/replies, four times over, fed frame by
frame to a session that listens all the time (a decoder that only buffers, as the speech
process's client does between sends). Prints µs of this process's CPU per frame for each run
and the best; a call is ~2,600 frames (~52 s of talk at 50 frames a second).
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


class _Buffering:
    """A decoder that keeps the audio and sends nothing (RemoteDecoder between its sends)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, pcm: bytes) -> str | None:
        self.buf += pcm
        if len(self.buf) >= 3200:
            self.buf = bytearray()
        return None

    def result(self) -> tuple[str, str | None, float, str]:
        return "", None, 0.0, ""


def frames() -> list[bytes]:
    from callbot import defaults

    pcm = b""
    for clip in sorted((REPO / "callbot" / "data" / "replies").glob("*.wav"))[:3]:
        with wave.open(str(clip)) as w:
            pcm += w.readframes(w.getnframes())
    n = defaults.FRAME_BYTES
    audio = (b"\0" * n * 150 + pcm) * 4
    return [audio[i:i + n] for i in range(0, len(audio) - n + 1, n)]


def session() -> Any:
    """A listening ``_LiveCall`` with only what ``on_frame`` reads."""
    import callbot.session as sess
    from callbot.speech.stream import EndpointingStream

    class Asr:
        def stream(self, expect: Any, **kw: Any) -> EndpointingStream:
            kw.setdefault("max_reply_s", 1000.0)
            kw.setdefault("trailing_silence_s", 100.0)
            return EndpointingStream(_Buffering(), **kw)

    class Listen:
        expect = ()
        timeout_s = 1000.0
        step = "bench"
        end_silence_s = None

    class Engine:
        ended = None
        step = "bench"

    class Turns:
        def begin(self, _s: Any) -> None: ...

        def end(self, _s: Any) -> None: ...

    sess._turns = Turns  # type: ignore[assignment]  # no reply-audio store here
    s: Any = object.__new__(sess._LiveCall)
    s.frames, s.held_keys, s.listen, s.engine = 0, [], Listen(), Engine()
    s.play_id, s.barge_from, s.play_started, s.play_len = None, None, 0.0, 0.0
    s.stream, s.asr, s.trailing_silence_s, s.clock = None, Asr(), None, time.monotonic
    s.judge, s.timings = None, {}
    return s


def run(reps: int) -> float:
    """µs of CPU per frame over *reps* passes of the audio."""
    audio = frames()
    s = session()
    t = time.process_time()
    for _ in range(reps):
        s.stream = None
        for f in audio:
            s.on_frame(f)
    return (time.process_time() - t) / (reps * len(audio)) * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="passes of the audio per run")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    got = [run(args.reps) for _ in range(args.runs)]
    print("endpointing: " + ", ".join(f"{x:.2f}" for x in got)
          + f" µs CPU per 20 ms frame (best {min(got):.2f}; ~2,600 frames a call: "
          f"{min(got) * 2600 / 1000:.1f} ms)")


if __name__ == "__main__":
    main()
