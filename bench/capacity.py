"""Capacity: N lines of a mask campaign against SIPp, with the real worker and dispatcher.

Run: ``.venv/bin/python bench/capacity.py`` (100 lines, 100 residents; ``--lines 24 --calls
48`` for a smaller run). SIPp answers every call at once (bench/sipp/capacity_uas.xml) and
streams a recorded reply dialogue as RTP: 需要 … 两个 … 是的, each reply a clip of
callbot/data/replies placed ~1 s after the robot's question ends (the prompts are rendered in a
scratch cache first to time them; the WAV is built from those clips by this script). One
``callbot worker --lines N`` and one ``callbot dispatcher`` run as a user would start them, on
an embedded Redis and SQLite in a temporary CALLBOT_DATA_DIR (``REDIS_URL`` / ``DATABASE_URL``
to use servers), the built-in ``mask_reservation`` template, a cold prompt cache.

Prints: completed and understood (need_masks = true, masks = 2) / heard nothing (answered,
no reply heard at all); RSS (peak, all processes of the worker and the dispatcher) per process
and per call, with PSS beside it (shared pages counted once); CPU-seconds per call over the
whole run, the start burst (campaign start → last call answered) and while talking; claim →
INVITE p50/p95 (claim: ``attempts.started_at``; INVITE: SIPp's message log); reply → next prompt
p95 and frames lost (the line worker's own figures, CALLBOT_CALL_TIMINGS); and the box's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SIPP_DIR = REPO / "bench" / "sipp"
REPLIES = REPO / "callbot" / "data" / "replies"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"
REPLY_CLIPS = ("xuyao.wav", "liangge.wav", "shide.wav")  # 需要, 两个, 是的
GAP_S = 1.0
"""A reply starts this long after the robot's question is expected to end."""
NEXT_PROMPT_S = 0.35
"""Expected end of a reply → the robot's next prompt (0.3 s end silence + work)."""


def names(n: int) -> list[str]:
    """n distinct three-character names (distinct greetings: per-contact prompts)."""
    return [SURNAMES[i % 20] + GIVEN[(i // 20) % 20] + GIVEN[(i * 7 + 3) % 20] for i in range(n)]


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_media_port(span: int = 4, tries: int = 200) -> int:
    """An even UDP port p with p … p+span-1 all free on 127.0.0.1: SIPp's media port (``-mp``)
    takes p for audio RTP, p+1 its RTCP, p+2 and p+3 video RTP/RTCP; a port taken among them
    (another run's RTP) makes SIPp exit at start, so every call would go unanswered."""
    for _ in range(tries):
        base = _free_port() & ~1
        if base + span > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise SystemExit(f"no {span} consecutive free UDP ports for SIPp's media")


def _wav_s(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def dialogue_plan(scratch: Path, name: str) -> list[float]:
    """Seconds of robot speech before each reply and after the last: [opening, ask_count,
    confirm, thanks], rendered as a call renders them (in a scratch cache)."""
    from callbot.config import load_settings
    from callbot.dialogue import DialogueEngine, Heard, Say
    from callbot.script import load_script
    from callbot.speech.tts import make_tts

    settings = load_settings({"CALLBOT_DATA_DIR": str(scratch)})
    tts = make_tts(settings)
    script = load_script("mask_reservation")
    engine = DialogueEngine(script, {"姓名": name}, committee=settings.committee)

    def spoken(actions: list[Any]) -> float:
        return sum(_wav_s(Path(tts.render(a.text, rate=script.rate)))
                   for a in actions if isinstance(a, Say))

    plan = [spoken(engine.start())]
    for reply in ("需要", "两个", "是的"):
        plan.append(spoken(engine.on(Heard(reply))))
    assert engine.ended == "completed" and engine.answers == {"need_masks": True, "masks": 2}, \
        (engine.ended, engine.answers)
    return plan


def build_reply_wav(plan: list[float], dst: Path) -> float:
    """The resident's side of the call as one µ-law WAV; returns its length in seconds."""
    rate = 8000
    out = bytearray()
    t = 0.0
    for clip, robot_s in zip(REPLY_CLIPS, plan, strict=False):
        t += robot_s + GAP_S
        out += b"\0\0" * (round(t * rate) - len(out) // 2)
        with wave.open(str(REPLIES / clip), "rb") as w:
            assert w.getframerate() == rate and w.getsampwidth() == 2 and w.getnchannels() == 1
            pcm = w.readframes(w.getnframes())
        out += pcm
        t = len(out) / 2 / rate + NEXT_PROMPT_S
    t += plan[-1] + 3.0
    out += b"\0\0" * (round(t * rate) - len(out) // 2)
    raw = dst.with_suffix(".s16.wav")
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(out))
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", str(dst)], check=True)
    raw.unlink()
    return t


def _tree(pids: list[int]) -> list[Any]:
    import psutil

    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            procs.append(p)
            procs.extend(p.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return procs


class Meter:
    """CPU seconds (all processes ever seen, so exited ones still count) and peak memory."""

    def __init__(self, roots: list[int]):
        self.roots = roots
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.roles: dict[int, str] = {}
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_procs: list[tuple[str, int]] = []

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, cpu in self.cpu.items():
            out[self.roles[pid]] = out.get(self.roles[pid], 0.0) + cpu
        return out

    def sample(self, memory: bool = True) -> float:
        import psutil

        rss = pss = 0
        per: list[tuple[str, int]] = []
        for p in _tree(self.roots):
            try:
                t = p.cpu_times()
                if p.pid not in self.names:
                    cmd = p.cmdline()
                    self.names[p.pid] = " ".join(cmd[2:6]) if len(cmd) > 2 else p.name()
                    self.roles[p.pid] = _role(cmd)
                    if self.roles[p.pid] == "zygote":  # espeak-ng's (callbot.speech.native):
                        # its CPU is its parent's rendering, counted with the parent
                        self.roles[p.pid] = self.roles.get(p.ppid(), "other")
                if self.roles[p.pid] == "helper":
                    continue  # espeak, sox…: counted in their parent's children times
                # children: espeak / sox runs of the prompt renderer, once they have exited
                self.cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
                if memory:
                    m = p.memory_full_info()
                    rss += m.rss
                    pss += m.pss
                    per.append((self.names[p.pid], m.rss))
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if memory and rss > self.peak_rss:
            self.peak_rss, self.peak_procs = rss, per
        self.peak_pss = max(self.peak_pss, pss)
        return sum(self.cpu.values())


def _role(cmd: list[str]) -> str:
    line = " ".join(cmd)
    if "callbot worker" in line or "callbot.__main__ worker" in line:
        return "line" if "--runner" in line else "supervisor"
    if "callbot.speech.service" in line:
        return "speech"
    if "callbot.speech.native" in line:
        return "zygote"
    if "callbot.campaign.store_service" in line:
        return "store"  # the host's store process (the line processes' SQL)
    if "dispatcher" in line:
        return "dispatcher"
    return "helper" if "python" not in line else "other"


def _sip_conf(path: Path, sipp_port: int) -> None:
    path.write_text(f"""[account]
mode = direct
transport = udp
bind = 127.0.0.1
local_port = 0
domain = 127.0.0.1
username = callbot
response_timeout = 8

[dial]
uri = sip:{{number}}@127.0.0.1:{sipp_port}

[media]
codecs = PCMU
rtp_port = 20000

[calls]
ring_timeout = 30
max_call_length = 300
""")


SPLIT = ("endpoint_to_prompt", "decode_wait", "reply_store", "answers_store")
"""The parts of reply → next prompt the line worker logs (callbot.session CallReport.timings):
the reply judged ended → prompt started, and within it the recogniser's answer, the reply's
row and audio stored, its answers stored; what is left is the dialogue and starting the prompt."""

_STAMP = re.compile(r"^-+ (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)")
_INVITE = re.compile(r"^INVITE sip:(\d+)@")


def invite_times(log: Path) -> dict[str, datetime]:
    """Dialled number → when SIPp received its (first) INVITE, from SIPp's message log."""
    out: dict[str, datetime] = {}
    stamp: datetime | None = None
    received = False
    for line in log.read_text(errors="replace").splitlines():
        m = _STAMP.match(line)
        if m:
            stamp = datetime.fromisoformat(f"{m.group(1)} {m.group(2)}")
            received = False
            continue
        if "message received" in line:
            received = True
            continue
        m = _INVITE.match(line)
        if m and received and stamp is not None:
            out.setdefault(m.group(1)[-11:], stamp)
    return out


def _count_invites(log: Path) -> int:
    try:
        return log.read_bytes().count(b"\nINVITE sip:")
    except FileNotFoundError:
        return 0


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def heartbeat_env(heartbeat_s: float | None) -> tuple[dict[str, str], str]:
    """The line workers' heartbeat for the run: the default interval (nothing set, as a user's
    worker) unless ``--heartbeat`` asks for another; the env to add and how the output says it.
    A heartbeat is an SQL write per line process, so a shorter one than the default is CPU the
    bench would count that a user's worker does not spend."""
    from callbot import defaults

    if heartbeat_s is None:
        return {}, f"heartbeat {defaults.WORKER_HEARTBEAT_S:g} s (default)"
    if heartbeat_s <= 0:
        raise SystemExit(f"--heartbeat must be > 0 s, got {heartbeat_s:g}")
    return {"CALLBOT_HEARTBEAT_S": f"{heartbeat_s:g}"}, \
        f"heartbeat {heartbeat_s:g} s (--heartbeat; default {defaults.WORKER_HEARTBEAT_S:g})"


def run(lines: int, calls: int, keep: Path | None = None, record: bool = False,
        heartbeat_s: float | None = None) -> dict[str, Any]:
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError

    from callbot.campaign import service
    from callbot.campaign.lists import save_list
    from callbot.campaign.models import Attempt, Campaign, LineWorker
    from callbot.campaign.store import open_db
    from callbot.campaign.worker import processes_for
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    sipp = shutil.which("sipp")
    if sipp is None:
        raise SystemExit("sipp not installed (apt-get install sip-tester)")
    tmp = Path(tempfile.mkdtemp(prefix="callbot-capacity-"))
    try:
        plan = dialogue_plan(tmp / "scratch", names(1)[0])
        call_len = build_reply_wav(plan, tmp / "capacity_reply_ulaw.wav")
        shutil.copy(SIPP_DIR / "capacity_uas.xml", tmp / "capacity_uas.xml")
        sipp_port = _free_port()
        _sip_conf(tmp / "sip.conf", sipp_port)
        env = {"CALLBOT_DATA_DIR": str(tmp / "var"), "CALLBOT_SIP_CONF": str(tmp / "sip.conf"),
               "CALLBOT_CALL_TIMINGS": str(tmp / "timings.jsonl")}
        beat_env, beat_note = heartbeat_env(heartbeat_s)
        env.update(beat_env)
        for k in ("DATABASE_URL", "REDIS_URL", "CALLBOT_MODELS_DIR", "CALLBOT_TRANSFER_SPARE_LEGS"):
            if os.environ.get(k):
                env[k] = os.environ[k]
        if not env.get("CALLBOT_MODELS_DIR") and (REPO.parent / "shared" / "models").is_dir():
            env["CALLBOT_MODELS_DIR"] = str(REPO.parent / "shared" / "models")
        settings = load_settings(env)
        factory = open_db(settings)
        csv = "姓名,电话\n" + "".join(f"{n},1380000{i:04d}\n" for i, n in enumerate(names(calls)))
        with session_scope(factory) as s:
            save_list(s, "capacity", parse_contacts(csv.encode(), "capacity.csv"))
            cid = service.create_campaign(s, "capacity", "capacity", "mask_reservation",
                                          lines=lines, windows="00:00-24:00",
                                          record_calls=record).id
        penv = dict(os.environ, **env, PYTHONPATH=str(REPO))
        log = open(tmp / "processes.log", "wb")  # noqa: SIM115
        sipp_proc = subprocess.Popen(
            [sipp, "-sf", "capacity_uas.xml", "-i", "127.0.0.1", "-p", str(sipp_port),
             "-mi", "127.0.0.1", "-mp", str(free_media_port()), "-nostdin", "-aa", "-trace_msg",
             "-message_file", "messages.log", "-trace_err", "-l", str(calls + 10)],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        py = sys.executable
        worker = subprocess.Popen([py, "-m", "callbot", "worker", "--lines", str(lines)],
                                  env=penv, cwd=tmp, stdout=log, stderr=log)
        dispatcher = None
        try:
            want = processes_for(lines, settings)
            t0 = time.monotonic()
            while True:  # every line-worker process up (phone, models) before the clock starts
                assert worker.poll() is None, "the worker exited: " + \
                    (tmp / "processes.log").read_text(errors="replace")[-2000:]
                if sipp_proc.poll() is not None:  # e.g. a media port taken: no call would answer
                    raise SystemExit("SIPp exited: " + " ".join(
                        p.read_text(errors="replace")[-500:] for p in tmp.glob("*_errors.log")))
                try:
                    with session_scope(factory) as s:
                        up = s.scalar(select(func.count()).select_from(LineWorker)
                                      .where(LineWorker.stopped_at.is_(None))) or 0
                except OperationalError:
                    up = 0
                if up >= want:
                    break
                if time.monotonic() - t0 > 600:
                    raise SystemExit(f"only {up}/{want} line-worker processes came up")
                time.sleep(0.5)
            startup_s = time.monotonic() - t0
            time.sleep(2)
            meter = Meter([worker.pid])
            idle_cpu = meter.sample()
            dispatcher = subprocess.Popen([py, "-m", "callbot", "dispatcher", "--interval", "0.5"],
                                          env=penv, cwd=tmp, stdout=log, stderr=log)
            meter.roots.append(dispatcher.pid)
            load_before = os.getloadavg()
            with session_scope(factory) as s:
                service.start(s, cid)
            t_start = time.monotonic()
            cpu_start = meter.sample()
            roles_start = meter.by_role()
            burst_end = cpu_burst = None
            deadline = t_start + call_len * (calls / lines + 1) + 300
            done = False
            while not done and time.monotonic() < deadline:
                time.sleep(1.0)
                cpu = meter.sample()
                try:
                    with session_scope(factory) as s:
                        # every resident called once (a retry the policy schedules for
                        # later — a misheard reply — is not this bench's business)
                        done = s.get_one(Campaign, cid).state == "finished" or (s.scalar(
                            select(func.count()).select_from(Attempt).where(
                                Attempt.campaign_id == cid, Attempt.ended_at.is_not(None))) or 0
                        ) >= calls
                except OperationalError:  # SQLite busy under load: ask again next second
                    continue
                # SIPp answers every INVITE at once: the burst ends with the N-th INVITE
                if burst_end is None and _count_invites(tmp / "messages.log") >= min(lines, calls):
                    burst_end, cpu_burst = time.monotonic(), cpu
            t_end = time.monotonic()
            cpu_end = meter.sample(memory=False)
            roles_end = meter.by_role()
            load_after = os.getloadavg()
        finally:
            for p in (dispatcher, worker):
                if p is not None and p.poll() is None:
                    p.terminate()
            for p in (dispatcher, worker):
                if p is not None:
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
            sipp_proc.terminate()
            try:
                sipp_proc.wait(10)
            except subprocess.TimeoutExpired:
                sipp_proc.kill()
            log.close()
        with session_scope(factory) as s:
            rows = s.execute(select(Attempt.phone, Attempt.started_at, Attempt.answered_at,
                                    Attempt.completed, Attempt.transcript, Attempt.id,
                                    Attempt.outcome, Attempt.ended)
                             .where(Attempt.campaign_id == cid)).all()
            from callbot.campaign.models import Answer

            answers: dict[int, dict[str, Any]] = {}
            for a in s.execute(select(Answer.attempt_id, Answer.field, Answer.value)).all():
                answers.setdefault(a[0], {})[a[1]] = a[2]
        invites = invite_times(tmp / "messages.log")
        claim_to_invite = [(invites[r.phone[-11:]] - r.started_at).total_seconds()
                           for r in rows if r.phone[-11:] in invites and r.started_at is not None]
        answered = [r for r in rows if r.answered_at is not None]
        heard_nothing = [r for r in answered
                         if not any(t.get("role") == "callee" for t in (r.transcript or []))]
        understood = [r for r in rows if r.completed and _val(answers.get(r.id, {}), "need_masks")
                      is True and _val(answers.get(r.id, {}), "masks") == 2]
        timings = [json.loads(x) for x in (tmp / "timings.jsonl").read_text().splitlines()] \
            if (tmp / "timings.jsonl").is_file() else []
        reply_to_prompt = [v for t in timings for v in t["timings"].get("reply_to_prompt", [])]
        split = {k: [v for t in timings for v in t["timings"].get(k, [])] for k in SPLIT}
        lost, expected = frames_lost(timings)
        n = max(1, len(rows))
        procs = len(meter.peak_procs)
        res = {
            "lines": lines, "calls": calls, "attempts": len(rows), "heartbeat": beat_note,
            "completed": sum(1 for r in rows if r.completed), "understood": len(understood),
            "answered": len(answered), "heard_nothing": len(heard_nothing),
            "heard_nothing_attempts": [(r.phone, r.outcome, r.ended) for r in heard_nothing][:10],
            "processes": procs, "startup_s": round(startup_s, 1),
            "rss_mb": round(meter.peak_rss / 2**20), "pss_mb": round(meter.peak_pss / 2**20),
            "rss_per_process_mb": round(meter.peak_rss / 2**20 / max(1, procs), 1),
            "rss_per_call_mb": round(meter.peak_rss / 2**20 / min(lines, calls), 1),
            "pss_per_call_mb": round(meter.peak_pss / 2**20 / min(lines, calls), 1),
            "biggest": sorted(meter.peak_procs, key=lambda x: -x[1])[:3],
            "cpu_s_per_call": round((cpu_end - cpu_start) / n, 3),
            "cpu_s_burst_per_call": round(((cpu_burst or cpu_end) - cpu_start) / min(lines, calls), 3),
            "cpu_s_talking_per_call": round((cpu_end - (cpu_burst or cpu_end)) / n, 3),
            "idle_cpu_s_before": round(idle_cpu, 1),
            "burst_s": round((burst_end or t_end) - t_start, 1), "run_s": round(t_end - t_start, 1),
            "claim_to_invite_p50": round(statistics.median(claim_to_invite), 3)
            if claim_to_invite else None,
            "claim_to_invite_p95": round(pct(claim_to_invite, 0.95), 3),
            "claim_to_invite_max": round(max(claim_to_invite), 3) if claim_to_invite else None,
            "reply_to_prompt_p50": round(pct(reply_to_prompt, 0.5), 3),
            "reply_to_prompt_p95": round(pct(reply_to_prompt, 0.95), 3),
            "frames_lost": lost, "frames_expected": expected,
            "split": {k: [round(pct(v, 0.5), 3), round(pct(v, 0.95), 3)] for k, v in split.items()},
            "load_before": [round(x, 1) for x in load_before],
            "load_after": [round(x, 1) for x in load_after],
            "call_s": round(call_len, 1),
            "cpu_s_per_call_by_role": {k: round((v - roles_start.get(k, 0.0)) / n, 3)
                                       for k, v in sorted(roles_end.items())},
        }
        return res
    finally:
        if keep is not None:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        _stop_embedded(tmp / "var")
        shutil.rmtree(tmp, ignore_errors=True)


def frames_lost(timings: list[dict[str, Any]]) -> tuple[int, int]:
    """(frames lost, frames expected) over the answered calls: each call's shortfall of 20 ms
    frames against its talk time (``talk_s`` × 50), summed. A call that got a frame or two more
    than its talk time (its audio started a moment before pjsua reported the answer, and the
    bridge hands audio over 60 ms at a time) lost nothing; it does not make up for another's
    loss, as the sum of the differences did (it printed "−102 lost" on a quiet box)."""
    lost = expected = 0
    for t in timings:
        if t["outcome"] != "answered":
            continue
        want = round(t["talk_s"] * 50)
        expected += want
        lost += max(0, want - int(t["frames"]))
    return lost, expected


def _val(answers: dict[str, Any], field: str) -> Any:
    v = answers.get(field)
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _stop_embedded(data_dir: Path) -> None:
    """An embedded redis-server outlives its clients: stop it before its folder goes."""
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "redis-server" in cmd and str(data_dir) in cmd:
            p.terminate()


def report(res: dict[str, Any]) -> str:
    r = res
    return "\n".join([
        f"capacity: {r['lines']} lines, {r['calls']} calls of ~{r['call_s']} s "
        f"(load {r['load_before']} → {r['load_after']}, {os.cpu_count()} CPUs)",
        f"  completed {r['completed']}/{r['calls']}, understood {r['understood']}, "
        f"answered {r['answered']}, heard nothing {r['heard_nothing']} "
        f"{r['heard_nothing_attempts'] or ''}",
        f"  RSS peak {r['rss_mb']} MB in {r['processes']} processes "
        f"({r['rss_per_process_mb']} MB each, {r['rss_per_call_mb']} MB per call; goal ≤ 25); "
        f"PSS {r['pss_mb']} MB ({r['pss_per_call_mb']} MB per call); biggest "
        + ", ".join(f"{n} {m / 2**20:.0f} MB" for n, m in r["biggest"]),
        f"  CPU-s per call {r['cpu_s_per_call']} (goal ≤ 0.3): start burst "
        f"{r['cpu_s_burst_per_call']} ({r['burst_s']} s to answer the first {min(r['lines'], r['calls'])}), "
        f"while talking {r['cpu_s_talking_per_call']}; by process "
        + ", ".join(f"{k} {v}" for k, v in r["cpu_s_per_call_by_role"].items()),
        f"  claim → INVITE p50 {r['claim_to_invite_p50']} s, p95 {r['claim_to_invite_p95']} s "
        f"(max {r['claim_to_invite_max']}; goal p95 ≤ 1 s)",
        f"  reply → next prompt p50 {r['reply_to_prompt_p50']} s, p95 {r['reply_to_prompt_p95']} s;"
        f" frames lost {r['frames_lost']} of {r['frames_expected']}",
        "  of which (p50 / p95 s): " + ", ".join(
            f"{k} {v[0]} / {v[1]}" for k, v in r.get("split", {}).items()),
        f"  worker start-up {r['startup_s']} s; run {r['run_s']} s; {r['heartbeat']}",
    ])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=100)
    ap.add_argument("--calls", type=int, default=None, help="residents (default: = lines)")
    ap.add_argument("--record", action="store_true", help="record every call (record_calls)")
    ap.add_argument("--keep", type=Path, default=None, help="copy the run folder here")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    ap.add_argument("--heartbeat", type=float, default=None, metavar="S",
                    help="line workers' heartbeat interval (default: the worker's own, "
                         "defaults.WORKER_HEARTBEAT_S)")
    args = ap.parse_args(argv)
    res = run(args.lines, args.calls or args.lines, keep=args.keep, record=args.record,
              heartbeat_s=args.heartbeat)
    print(report(res))
    if args.json:
        print(json.dumps(res, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
