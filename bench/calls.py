"""Concurrent SIP calls against the resident simulator: CPU, frames/s, memory.

    .venv/bin/python bench/calls.py                 # 1, 4, 16, 64 concurrent calls, 12 s each
    .venv/bin/python bench/calls.py --calls 16 --talk 20
    .venv/bin/python bench/calls.py --announcements   # cost of listening for carrier announcements

Each call plays a prompt (2.1 s) every 3 s and the resident answers each prompt with a 1.4 s WAV,
so audio flows both ways. Calls are spread over robot processes (4 per process, the pjsua2 limit)
and the simulator runs ceil(N/4) backend processes behind its SIP front. Prints CPU % of one core
per call (robot side and simulator side), frames/s per call (50 is real time), the worst gap
between two frames, and resident memory per process.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIX = REPO / "tests" / "fixtures" / "sip"
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def robot(n_calls: int, port: int, talk_s: float, start_at: float, out: mp.Queue) -> None:
    """One robot process: up to 4 calls, each playing prompts and counting frames."""
    import faulthandler

    faulthandler.enable()  # a crash prints every thread's Python stack
    from callbot.config import SipConfig
    from callbot.telephony import Answered, Disconnected, Phone, PlaybackEnded

    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, ring_timeout_s=20,
                            response_timeout_s=10))
    phone.start()
    while time.time() < start_at:
        time.sleep(0.01)
    stats = []
    calls = []
    for _ in range(n_calls):
        st = {"frames": 0, "last": 0.0, "gap": 0.0}

        def on_frame(pcm: bytes, st: dict = st) -> None:
            now = time.monotonic()
            if st["last"]:
                st["gap"] = max(st["gap"], now - st["last"])
            st["last"] = now
            st["frames"] += 1
        calls.append(phone.dial(f"sip:2000@127.0.0.1:{port}", on_frame=on_frame))
        stats.append(st)
    cpu0 = time.process_time()
    t0 = time.monotonic()
    answered_at: dict[int, float] = {}
    next_play: dict[int, float] = {}
    done: set[int] = set()
    while len(done) < len(calls) and time.monotonic() - t0 < talk_s + 30:
        for i, c in enumerate(calls):
            if i in done:
                continue
            while not c.events.empty():
                ev = c.events.get_nowait()
                if isinstance(ev, Answered):
                    answered_at[i] = time.monotonic()
                    c.play(FIX / "prompt.wav")
                elif isinstance(ev, PlaybackEnded):
                    next_play[i] = time.monotonic() + 3.0
                elif isinstance(ev, Disconnected):
                    done.add(i)
            if i in next_play and time.monotonic() >= next_play[i]:
                del next_play[i]
                c.play(FIX / "prompt.wav")
            if i in answered_at and time.monotonic() - answered_at[i] > talk_s:
                c.hangup()
                answered_at.pop(i)
        time.sleep(0.02)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    results = [c.wait(10) for c in calls]
    out.put({
        "pid": os.getpid(), "cpu_s": cpu, "wall_s": wall, "rss_mb": _rss_mb(os.getpid()),
        "calls": [{"outcome": r.outcome, "code": r.sip_code, "reason": r.reason, "talk_s": r.talk_s, "frames": s["frames"],
                   "gap": s["gap"]} for r, s in zip(results, stats, strict=True)],
    })
    phone.stop()


def run(n: int, talk_s: float, tmp: Path) -> dict:
    from callbot.residents import Simulator

    table = tmp / "bench.yaml"
    shutil.copy(FIX / "reply.wav", tmp / "reply.wav")
    table.write_text("residents:\n  - {number: '2000', behaviour: answer, replies: ["
                     + ", ".join(["reply.wav"] * 20) + "]}\n")
    port = _free_port()
    procs = math.ceil(n / 4)
    sim = Simulator(str(table), str(tmp / f"rec{n}"), port=port, procs=procs)
    sim.start()
    sim_pids = [p.pid for p in sim._children]
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    start_at = time.time() + 2.0 + 0.1 * procs
    robots = []
    left = n
    while left > 0:
        k = min(4, left)
        p = ctx.Process(target=robot, args=(k, port, talk_s, start_at, q))
        p.start()
        robots.append(p)
        left -= k
    while time.time() < start_at:
        time.sleep(0.01)
    sim_cpu0 = sum(_cpu_s(pid) for pid in sim_pids)
    t0 = time.monotonic()
    reports: list[dict] = []
    deadline = time.monotonic() + talk_s + 90
    while len(reports) < len(robots) and time.monotonic() < deadline:
        try:
            reports.append(q.get(timeout=1))
        except Exception:  # noqa: BLE001 - queue.Empty
            dead = [p.exitcode for p in robots if p.exitcode not in (None, 0)]
            if dead:
                print(f"      robot process died: exit codes {dead}")
                break
    sim_wall = time.monotonic() - t0
    sim_cpu = sum(_cpu_s(pid) for pid in sim_pids) - sim_cpu0
    sim_rss = max(_rss_mb(pid) for pid in sim_pids)
    for p in robots:
        p.join(20)
        if p.is_alive():
            p.kill()
    sim.stop()
    calls = [c for r in reports for c in r["calls"]]
    answered = [c for c in calls if c["outcome"] == "answered" and c["talk_s"] > 0]
    cpu_robot = sum(r["cpu_s"] for r in reports) / max(1, sum(r["wall_s"] for r in reports) /
                                                         len(reports))
    return {
        "calls": n, "robot_procs": len(robots), "sim_procs": procs,
        "answered": len(answered),
        "robot_cpu_pct_per_call": 100 * cpu_robot / n,
        "sim_cpu_pct_per_call": 100 * sim_cpu / sim_wall / n,
        "frames_per_s": (sum(c["frames"] / c["talk_s"] for c in answered) / len(answered)
                         if answered else 0.0),
        "worst_gap_ms": 1000 * max((c["gap"] for c in answered), default=0.0),
        "robot_rss_mb": max(r["rss_mb"] for r in reports),
        "sim_rss_mb": sim_rss,
        "failures": sorted({f"{c['outcome']} {c['code']} {c['reason']}" for c in calls
                            if c not in answered}),
    }


def announcements(tmp: Path) -> None:
    """Each synthesised announcement (clean and noisy) as 183 early media then 480, and a line
    that only rings for 10 s: the listener's CPU per call, from 183 to the decision, and what
    it decided."""
    import json

    from callbot import announcements as ann
    from callbot.config import SipConfig
    from callbot.residents import Simulator
    from callbot.speech.pinyin_asr import PinyinEngine
    from callbot.telephony import Disconnected, Frame, Phone, Ringing

    fix = REPO / "tests" / "fixtures" / "audio" / "announcements"
    meta = json.loads((fix / "transcripts.json").read_text(encoding="utf-8"))
    rows = ["residents:", '  - {number: "ring", behaviour: no_answer}']
    cases = {}
    for i, stem in enumerate(f"{s}{v}" for s in meta for v in ("", "_noisy")):
        cases[str(5000 + i)] = stem
        rows.append(f'  - {{number: "{5000 + i}", behaviour: early_media_fail, '
                    f'announcement: "{fix / (stem + ".wav")}", code: 480}}')
    # a colour ringback (彩铃): 12 s of a synthesised melody (chords with vibrato, not speech)
    # in early media, then 480 — what listening costs on a line that plays music while ringing
    import subprocess

    notes = [f"pl {f} pl {f * 1.25:.0f} pl {f * 1.5:.0f}" for f in (262, 294, 330, 349, 392, 440)]
    parts = []
    for i, chord in enumerate(notes * 2):
        part = tmp / f"note{i}.wav"
        subprocess.run(["sox", "-R", "-n", "-r", "8000", "-c", "1", "-b", "16", str(part), "synth",
                        "1", *chord.split(), "tremolo", "5", "40", "gain", "-12"], check=True)
        parts.append(str(part))
    music = tmp / "ringback_music.wav"
    subprocess.run(["sox", *parts, str(music)], check=True)
    rows.append(f'  - {{number: "music", behaviour: early_media_fail, announcement: "{music}", '
                f'code: 480}}')
    (tmp / "ann.yaml").write_text("\n".join(rows) + "\n", encoding="utf-8")
    engine = PinyinEngine.load()
    print(f"{'line':<22} {'outcome':<15} {'right':>5} {'CPU s':>6} {'183→decided s':>13}")
    cpu, right = [], 0
    with Simulator(str(tmp / "ann.yaml"), str(tmp / "rec"), port=_free_port()) as sim, \
            Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3)) as phone:
        for number, stem in [*cases.items(), ("ring", "ringing 10 s"),
                             ("music", "彩铃 music 12 s")]:
            lis = ann.AnnouncementListener(engine)
            call = phone.dial(f"sip:{number}@127.0.0.1:{sim.port}", early_frames=True)
            t183 = decided = None
            while True:
                ev = call.events.get(timeout=30)
                if isinstance(ev, Ringing) and t183 is None:
                    t183 = time.monotonic()
                elif isinstance(ev, Frame) and lis.listening and lis.feed(ev.pcm, ev.early):
                    decided = time.monotonic()
                    call.hangup()
                elif isinstance(ev, Disconnected):
                    break
            ann.apply(lis, ev.result)
            want = meta.get(stem.removesuffix("_noisy"), {}).get("outcome")
            ok = want is not None and ev.result.outcome == want
            right += ok
            if want is not None:
                cpu.append(lis.cpu_s)
            took = f"{decided - t183:.2f}" if decided and t183 else "-"
            print(f"{stem:<22} {ev.result.outcome:<15} {'yes' if ok else 'no':>5} "
                  f"{lis.cpu_s:>6.3f} {took:>13}", flush=True)
    print(f"decided right {right}/{len(cases)}; listener CPU per announced call: mean "
          f"{sum(cpu) / len(cpu):.3f} s, max {max(cpu):.3f} s")


ASK = """\
name: ask
fields:
  need_masks: bool
steps:
  ask:
    ask: "您好，这里是居委会，想问问您家要不要口罩？"
    answers:
      yes: {set: {need_masks: true}, say: "好的，再见。", end: completed}
      no: {set: {need_masks: false}, say: "好的，再见。", end: completed}
"""


def shared(tmp: Path, rounds: int) -> None:
    """The first seconds after an answer, decoded once or twice: the same answered calls (a
    resident who says 喂 on picking up, then 需要; a network that answers and says 已关机; a
    来电秘书) through the session a campaign uses, with the announcement listener reading the
    dialogue's stream (one decoder) and with a decoder of its own (two); CPU of the call's
    thread (decoding, endpointing, the dialogue) per call."""
    from callbot import announcements as ann
    from callbot.config import SipConfig, load_settings
    from callbot.residents import Simulator
    from callbot.session import run_call
    from callbot.speech.pinyin_asr import PinyinEngine
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone

    fix = REPO / "tests" / "fixtures" / "audio" / "announcements"
    replies = REPO / "callbot" / "data" / "replies"
    lines = {"6001": f'behaviour: answer, greeting: "{replies / "wei.wav"}", '
                     f'replies: ["{replies / "xuyao.wav"}"]',
             "6002": f'behaviour: answered_announcement, announcement: "{fix / "off_cmcc.wav"}"',
             "6003": f'behaviour: answered_announcement, announcement: "{fix / "asst_mishu.wav"}"'}
    (tmp / "shared.yaml").write_text("residents:\n" + "".join(
        f'  - {{number: "{n}", {v}}}\n' for n, v in lines.items()), encoding="utf-8")
    (tmp / "ask.yaml").write_text(ASK, encoding="utf-8")
    engine = PinyinEngine.load()
    tts = make_tts(load_settings({"CALLBOT_DATA_DIR": str(tmp / "var")}), engine="espeak")
    cpu: dict[tuple[bool, str], list[float]] = {}
    listener_cpu: dict[tuple[bool, str], list[float]] = {}
    outcomes: dict[tuple[bool, str], set[str]] = {}
    with Simulator(str(tmp / "shared.yaml"), str(tmp / "rec-shared"), port=_free_port()) as sim, \
            Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3)) as phone:
        def one(number: str) -> tuple[float, Any]:
            t0 = time.thread_time()
            rep = run_call(phone, f"sip:{number}@127.0.0.1:{sim.port}", tmp / "ask.yaml", {},
                           tts, engine, tts_rate="+40%")
            return time.thread_time() - t0, rep

        one("6001")  # renders the prompts once
        for _ in range(rounds):
            for share in (True, False):  # alternated: the box's load falls on both alike
                ann.SHARE_DECODER = share
                for number in lines:
                    took, rep = one(number)
                    cpu.setdefault((share, number), []).append(took)
                    listener_cpu.setdefault((share, number), []).append(
                        rep.result.extra.get("announcement_cpu_s", 0.0))
                    outcomes.setdefault((share, number), set()).add(rep.outcome)
        ann.SHARE_DECODER = True
    names = {"6001": "resident 喂 → 需要", "6002": "answered, 已关机", "6003": "answered, 来电秘书"}
    print(f"\nfirst {ann.AFTER_ANSWER_S:g} s after the answer, {rounds} calls each "
          f"(load average {os.getloadavg()[0]:.1f}):")
    print(f"{'line':<20} {'decoders':>8} {'outcome':<12} {'call CPU s':>10} {'listener CPU s':>14}")
    saved = []
    for number in lines:
        for share in (True, False):
            k = (share, number)
            print(f"{names[number]:<20} {'one' if share else 'two':>8} "
                  f"{'/'.join(sorted(outcomes[k])):<12} {sum(cpu[k]) / len(cpu[k]):>10.3f} "
                  f"{sum(listener_cpu[k]) / len(listener_cpu[k]):>14.3f}")
        saved.append(sum(cpu[(False, number)]) / rounds - sum(cpu[(True, number)]) / rounds)
    print(f"CPU saved per answered call by one decoder: mean {sum(saved) / len(saved):.3f} s "
          f"(resident {saved[0]:.3f}, carrier {saved[1]:.3f}, assistant {saved[2]:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--talk", type=float, default=12.0, help="seconds of talk per call")
    ap.add_argument("--announcements", action="store_true",
                    help="measure listening for carrier announcements instead: early media per "
                         "call, then the first seconds after an answer decoded once or twice")
    ap.add_argument("--rounds", type=int, default=3,
                    help="with --announcements: calls per line and way for the after-answer part")
    args = ap.parse_args()
    if args.announcements:
        with tempfile.TemporaryDirectory() as d:
            announcements(Path(d))
            shared(Path(d), args.rounds)
        return
    print(f"{os.cpu_count()} CPUs; talk {args.talk:g} s per call; CPU % is of one core")
    hdr = (f"{'calls':>5} {'robot procs':>11} {'answered':>8} {'robot CPU%/call':>15} "
           f"{'sim CPU%/call':>13} {'frames/s/call':>13} {'worst gap ms':>12} "
           f"{'robot RSS MB':>12} {'sim RSS MB':>10}")
    print(hdr)
    with tempfile.TemporaryDirectory() as d:
        for n in args.calls:
            r = run(n, args.talk, Path(d))
            print(f"{r['calls']:>5} {r['robot_procs']:>11} {r['answered']:>8} "
                  f"{r['robot_cpu_pct_per_call']:>15.2f} {r['sim_cpu_pct_per_call']:>13.2f} "
                  f"{r['frames_per_s']:>13.1f} {r['worst_gap_ms']:>12.0f} "
                  f"{r['robot_rss_mb']:>12.1f} {r['sim_rss_mb']:>10.1f}", flush=True)
            for f in r["failures"]:
                print(f"      not answered: {f}")


if __name__ == "__main__":
    main()
