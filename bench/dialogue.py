"""Dialogue latency on real calls: the robot calls the resident simulator over SIP (loopback).

    python bench/dialogue.py [--calls 4] [--lines 4] [--turns 10] [--tts espeak] [--rate +40%]
    python bench/dialogue.py --matrix [--calls 4 --lines 4 --turns 10]   # the four runs below

--matrix runs the bench four times, each in a fresh process: the calls' default end-of-reply
silence (DIALOGUE_END_SILENCE_S, 0.3 s) and the welfare built-in's (``end_silence: 0.8`` in
templates/welfare_check.yaml), each without and with --keep-voice, and prints one table with the
load average at the start and end of each run (the figures mean little on a loaded box).

Each resident asks "你说什么" (a recorded clip) after every prompt --turns times, then says
"不需要", so every call has many reply → prompt turns. Figures (p50 / p95 / max, ms):
  * reply → prompt: end of the resident's speech (the recogniser's last voiced frame, mapped to
    wall time) → the robot starts the next prompt (``call.play``). Includes the end-of-reply
    silence the recogniser waits for (DIALOGUE_END_SILENCE_S) and decoding. Goal p95 ≤ 400 ms.
  * endpoint → prompt: reply judged ended → next prompt started (decoding + engine + play).
  * answer → greeting (robot): the 200 OK/ACK event → greeting playback started.
  * answer → greeting (resident): what the resident hears, from its recording: first audio of
    the greeting after the answer (includes RTP and jitter buffers). Goal p95 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REPLIES = REPO / "callbot" / "data" / "replies"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * (len(s) - 1))))
    return s[k]


def line(name: str, values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return f"{name:<34} (no samples)"
    return (f"{name:<34} n={len(ms):<4} p50={pct(ms, 50):7.1f} ms  p95={pct(ms, 95):7.1f} ms  "
            f"max={max(ms):7.1f} ms")


def first_audio_s(wav: str, threshold: float = 300.0) -> float | None:
    """Seconds from the start of a resident recording (the answer) to the first loud frame."""
    from callbot.telephony.audio import read_wav, rms

    a = read_wav(wav)
    for i in range(len(a) // 160):
        if rms(a[i * 160:(i + 1) * 160]) > threshold:
            return i * 0.02
    return None


AUDIO_WORK: list[int] = []
"""Per reply's audio compressed: how many calls were in a turn (reply → prompt) as it started."""


def _voice_keeper(tmp: Path, defer: bool = True):  # type: ignore[no-untyped-def]
    """``on_reply`` as ``campaign.jobs.run_attempt`` does it, on a fresh SQLite database."""
    from callbot import recordings
    from callbot.campaign import service
    from callbot.campaign.jobs import _audio_pool
    from callbot.campaign.lists import save_list
    from callbot.campaign.models import Attempt, Contact, Target
    from callbot.campaign.store import open_db
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    factory = open_db(load_settings({"CALLBOT_DATA_DIR": str(tmp / "var")}))
    with session_scope(factory) as s:
        save_list(s, "b", parse_contacts("姓名,电话\n张阿姨,13800138000\n".encode(), "b.csv"))
        c = service.create_campaign(s, "b", "b", "mask_reservation")
        t = s.query(Target).one()
        ct = s.get_one(Contact, t.contact_id)
        a = Attempt(campaign_id=c.id, target_id=t.id, contact_id=ct.id, phone=ct.phone,
                    state="dialing")
        s.add(a)
        s.flush()
        owner = recordings.Owner(a.id, c.id, ct.id, ct.phone)
    store = recordings.DatabaseStore(factory)
    real_encode = recordings.encode

    def encode(pcm: bytes, *a, **kw) -> bytes:  # type: ignore[no-untyped-def]
        # a load-independent figure: was another call between a reply and its prompt right now?
        AUDIO_WORK.append(recordings.TURNS.busy)
        return real_encode(pcm, *a, **kw)

    recordings.encode = encode  # type: ignore[assignment]

    def on_reply(reply) -> None:  # type: ignore[no-untyped-def]
        added = recordings.add_reply(factory, store.name, owner, reply)
        if added is not None:
            _audio_pool().submit(recordings.put_audio, factory, store, added[0], added[1],
                                 reply.audio, **({} if defer else {"defer_s": 0}))

    return on_reply


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--lines", type=int, default=4, help="concurrent calls (≤ 4 per process)")
    ap.add_argument("--turns", type=int, default=10, help="repeat requests per call")
    ap.add_argument("--tts", default="espeak")
    ap.add_argument("--rate", default="+40%", help="TTS rate (shorter prompts, same dialogue)")
    ap.add_argument("--end-silence", type=float, default=None,
                    help="silence that ends a reply, s (default DIALOGUE_END_SILENCE_S)")
    ap.add_argument("--keep-voice", action="store_true",
                    help="store every reply's audio as a line worker does (row on the call's "
                         "thread, Opus + blob on the audio thread; a fresh SQLite file)")
    ap.add_argument("--no-defer", action="store_true",
                    help="with --keep-voice: compress and store at once, not after the next "
                         "prompt started (as before recordings.TURNS)")
    ap.add_argument("--record-calls", action="store_true",
                    help="also record each whole call (both sides) to a WAV")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--matrix", action="store_true",
                    help="run 0.3 s and 0.8 s end silence, each without and with --keep-voice, "
                         "and print one table")
    args = ap.parse_args()
    if args.matrix:
        matrix(args)
        return

    from callbot import defaults
    from callbot.config import SipConfig, load_settings
    from callbot.residents import Simulator, read_call_log
    from callbot.session import run_call
    from callbot.speech.asr import load_asr
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone
    from tests.conftest import free_port

    end_silence = args.end_silence if args.end_silence is not None else defaults.DIALOGUE_END_SILENCE_S
    tmp = Path(tempfile.mkdtemp(prefix="bench-dialogue-"))
    replies = [str(REPLIES / "nishuoshenme.wav")] * args.turns + [str(REPLIES / "buxuyao.wav")]
    numbers = [str(3000 + i) for i in range(args.calls)]
    rows = "\n".join(f"  - {{number: \"{n}\", behaviour: answer, replies: {json.dumps(replies)}}}"
                     for n in numbers)
    (tmp / "personas.yaml").write_text("residents:\n" + rows + "\n", encoding="utf-8")
    sim = Simulator(str(tmp / "personas.yaml"), str(tmp / "rec"), port=free_port(),
                    procs=max(1, (args.lines + 3) // 4))
    sim.start()
    settings = load_settings()
    tts = make_tts(settings, engine=args.tts)
    asr = load_asr(settings)
    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3, max_call_s=900))
    phone.start()
    keep = _voice_keeper(tmp, defer=not args.no_defer) if args.keep_voice else None
    t0 = time.monotonic()
    try:
        def place(number: str):
            return run_call(phone, f"sip:{number}@127.0.0.1:{sim.port}", "mask_reservation",
                            {"姓名": "张阿姨"}, tts, asr, tts_rate=args.rate,
                            trailing_silence_s=end_silence, max_call_s=900, on_reply=keep,
                            record_to=tmp / f"call-{number}-{time.monotonic_ns()}.wav"
                            if args.record_calls else None)

        reports = [place(numbers[0])]  # the first call also warms the prompt cache
        with ThreadPoolExecutor(min(args.lines, 4)) as pool:
            reports += list(pool.map(place, numbers[1:]))
        time.sleep(0.5)
        logs = [r for r in read_call_log(sim.record_dir) if r["number"] in numbers]
    finally:
        phone.stop()
        sim.stop()
    wall = time.monotonic() - t0
    reply = [v for r in reports for v in r.timings["reply_to_prompt"]]
    endpoint = [v for r in reports for v in r.timings["endpoint_to_prompt"]]
    greet = [v for r in reports for v in r.timings["answer_to_greeting"]]
    # the greeting WAV's own leading silence is not latency: subtract it
    from callbot.dialogue import DialogueEngine, Say
    from callbot.prompts import Prompts
    from callbot.script import load_script

    script = load_script("mask_reservation")
    opening = tuple(a.text for a in DialogueEngine(script, {"姓名": "张阿姨"}).start()
                    if isinstance(a, Say))
    lead = first_audio_s(str(Prompts(tts, opening, tmp, rate=args.rate).batch(opening)[0])) or 0.0
    heard = [x - lead for x in (first_audio_s(r["recording"]) for r in logs if r.get("recording"))
             if x is not None]
    ended = [r.ended for r in reports]
    if args.json:
        print(json.dumps({"reply_to_prompt_s": reply, "endpoint_to_prompt_s": endpoint,
                          "answer_to_greeting_s": greet, "resident_first_audio_s": heard,
                          "ended": ended, "outcomes": [r.outcome for r in reports],
                          "end_silence_s": end_silence, "keep_voice": bool(keep),
                          "audio_during_turn": sum(1 for b in AUDIO_WORK if b),
                          "audio_encoded": len(AUDIO_WORK)}))
        return
    print(f"dialogue bench: {len(reports)} calls × {args.turns + 1} replies, {min(args.lines, 4)} "
          f"lines, TTS {args.tts} {args.rate}, ASR {asr.name}, end silence {end_silence:g} s, "
          f"{wall:.0f} s wall" + (", replies kept" + (" (not deferred)" if args.no_defer else " (deferred)") if keep else "")
          + (", calls recorded" if args.record_calls else ""))
    outcomes = [f"{r.outcome}/{r.ended or '-'}" for r in reports]
    print("calls: " + ", ".join(f"{o} ×{outcomes.count(o)}" for o in sorted(set(outcomes))))
    if keep:
        during = sum(1 for b in AUDIO_WORK if b)
        print(f"reply audio compressed while a call was between a reply and its prompt: "
              f"{during} of {len(AUDIO_WORK)}")
    print(line("reply → next prompt", reply))
    print(line("endpoint → next prompt", endpoint))
    print(line("answer → greeting (robot)", greet))
    print(line("answer → greeting (resident hears)", heard)
          + f"  (prompt's own {lead * 1000:.0f} ms lead-in removed)")


def matrix(args: argparse.Namespace) -> None:
    """The four runs of --matrix, each a fresh process (one SIP endpoint per process)."""
    import os
    import subprocess

    from callbot import defaults

    welfare = 0.8  # templates/welfare_check.yaml's end_silence
    runs = [(defaults.DIALOGUE_END_SILENCE_S, False), (defaults.DIALOGUE_END_SILENCE_S, True),
            (welfare, False), (welfare, True)]
    base = [sys.executable, str(Path(__file__).resolve()), "--json", "--calls", str(args.calls),
            "--lines", str(args.lines), "--turns", str(args.turns), "--tts", args.tts,
            f"--rate={args.rate}"]
    print(f"dialogue bench --matrix: {args.calls} calls × {args.turns + 1} replies, "
          f"{min(args.lines, 4)} lines, TTS {args.tts} {args.rate}; {os.cpu_count()} CPUs\n")
    print("| end-of-reply silence | voice kept | reply → next prompt p50 / p95 / max | "
          "endpoint → prompt p50 / p95 | turns | calls ended | load (1 min) start → end |")
    print("|---|---|---|---|---|---|---|")
    for silence, keep in runs:
        load0 = os.getloadavg()[0]
        cmd = base + ["--end-silence", f"{silence:g}"] + (["--keep-voice"] if keep else [])
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        load1 = os.getloadavg()[0]
        try:
            got = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            print(f"| {silence:g} s | {'yes' if keep else 'no'} | run failed (rc {done.returncode}): "
                  f"{done.stderr.strip().splitlines()[-1:]} | | | | |")
            continue
        ms = [v * 1000 for v in got["reply_to_prompt_s"]]
        ep = [v * 1000 for v in got["endpoint_to_prompt_s"]]
        ended = [e or "-" for e in got["ended"]]
        kept = (f"yes ({got['audio_during_turn']} of {got['audio_encoded']} compressed "
                f"during a turn)" if keep else "no")
        print(f"| {silence:g} s | {kept} | {pct(ms, 50):.0f} / **{pct(ms, 95):.0f}** / "
              f"{max(ms, default=float('nan')):.0f} ms | {pct(ep, 50):.0f} / {pct(ep, 95):.0f} ms | "
              f"{len(ms)} | " + ", ".join(f"{e} ×{ended.count(e)}" for e in sorted(set(ended)))
              + f" | {load0:.1f} → {load1:.1f} |")


if __name__ == "__main__":
    main()
