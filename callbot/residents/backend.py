"""A backend process of the resident simulator: one pjsua2 Phone answering up to 4 calls, each
played by its persona (``run_persona``) on a thread of its own."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from callbot.residents.personas import Persona, load_personas

log = logging.getLogger("callbot.residents")

CALLS_PER_BACKEND = 4
"""pjsua2's per-process call limit; the front never gives a backend more."""
SPEECH_RMS = 300.0
"""Received audio above this RMS (16-bit) counts as the robot speaking."""
PROMPT_GAP_S = 0.6
"""Silence after speech that ends a prompt, seconds."""
REPLY_DELAY_S = 0.25
"""Pause between the end of a prompt and the resident's reply, seconds."""


def say_wav(text: str, cache: Path) -> str:
    """Render ``say:`` text with espeak-ng to an 8 kHz WAV (cached by text)."""
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / f"say-{hashlib.sha1(text.encode()).hexdigest()[:12]}.wav"
    if not out.exists():
        raw = out.with_suffix(".raw.wav")
        subprocess.run(["espeak-ng", "-v", "cmn", "-s", "200", "-w", str(raw), text], check=True,
                       capture_output=True)
        subprocess.run(["sox", "-R", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e",
                        "signed-integer", str(out)], check=True, capture_output=True)
        raw.unlink()
    return str(out)


@dataclass
class _CallLog:
    number: str
    persona: str
    behaviour: str
    recording: str | None = None
    prompts_heard: int = 0
    prompt_spans: list[list[float]] = field(default_factory=list)
    """[start_s, end_s] of each prompt, seconds from the answer (the recording's time base)."""
    replies_given: list[str] = field(default_factory=list)
    barge_ins: list[list[float]] = field(default_factory=list)
    """[prompt_number, start_s] of each reply that talked over its prompt (``barge_in_after_s``):
    which prompt (1-based, as counted in ``prompts_heard``) and when the reply started, seconds
    from the answer (the recording's time base)."""
    dtmf_sent: str = ""
    hung_up_mid_prompt: bool = False
    result: dict[str, Any] | None = None
    """The call as the resident saw it; ``hangup_by`` is 'resident' or 'caller' here."""
    started_at: float | None = None
    """Wall-clock time (Unix seconds) the INVITE arrived."""
    ended_at: float | None = None
    """Wall-clock time the call was over for the resident."""
    caller_gone: bool = False
    """The caller's SIP address stopped answering (a killed robot): the resident hung up, as
    the network does with a call whose other end vanished."""


def _as_resident(res: Any) -> dict[str, Any]:
    d = res.to_json()
    d["hangup_by"] = {"robot": "resident", "callee": "caller"}.get(d["hangup_by"])
    return d


def run_persona(call: Any, persona: Persona, record_dir: Path) -> _CallLog:  # noqa: C901
    """Play one persona on one incoming call until it is over (blocking; one thread per call)."""
    from callbot.telephony import Disconnected, Frame, PlaybackEnded
    from callbot.telephony.audio import rms

    clog = _CallLog(call.number, persona.name or persona.number, persona.behaviour)
    cache = record_dir / "say"

    def media(ref: str) -> str:
        return say_wav(ref[4:], cache) if ref.startswith("say:") else ref

    def sleep_unless_done(seconds: float) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if call.done:
                return False
            time.sleep(0.05)
        return True

    def play_to_end(ref: str, limit_s: float = 30.0) -> None:
        """Play an announcement and wait for its end (or the call's)."""
        call.play(media(ref))
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and not call.done:
            try:
                ev = call.events.get(timeout=0.1)
            except Exception:  # noqa: BLE001 - queue.Empty
                continue
            if isinstance(ev, PlaybackEnded):
                return

    def answer_recording() -> None:
        record_dir.mkdir(parents=True, exist_ok=True)
        rec = record_dir / f"{call.number}-{os.getpid()}-{call.id}.wav"
        clog.recording = str(rec)
        call.record(rec)
        call.answer(200)

    b = persona.behaviour
    if b == "busy":
        call.reject(persona.code or 486)
    elif b == "reject":
        call.reject(persona.code or 603)
    elif b == "no_answer":
        call.ring(180)
    elif b == "early_media_fail":
        call.ring(183)
        play_to_end(persona.announcement or "silence", max(persona.ring_s, 0.0) + 30)
        if persona.ring_s:
            sleep_unless_done(persona.ring_s)
        call.reject(persona.code or 480)
    elif b == "answered_announcement":
        # answer, say the announcement; then listen (an assistant: for a message), hang up
        answer_recording()
        t0 = time.monotonic()
        play_to_end(persona.announcement or "silence")
        _hear_message(call, clog, time.monotonic() - t0, persona.hangup_after_s)
        call.hangup()
    else:
        call.ring(180)
        if sleep_unless_done(persona.ring_s) and not call.done:
            answer_recording()
    if b not in ("answer", "silent", "hangup_mid_prompt") or call.done:
        res = call.wait(120)
        clog.result = _as_resident(res)
        return clog

    # Talking: find the robot's prompts by energy, reply after each one.
    t_answer: float | None = None
    frames = 0
    speech_frames = 0
    silent_frames = 0
    in_prompt = False
    prompt_start = 0.0
    replying = False
    replies = list(persona.replies)
    barge_at = [persona.barge_in_after(i) for i in range(len(replies))]
    barged = False  # this prompt's reply was already given over it
    gap_frames = int(PROMPT_GAP_S / 0.02)

    def give(reply: str) -> None:
        nonlocal replying
        clog.replies_given.append(reply)
        if reply.startswith("dtmf:"):
            call.send_dtmf(reply[5:])
            clog.dtmf_sent += reply[5:]
            if not replies and persona.after_replies == "hangup":
                time.sleep(0.5)
                call.hangup()
        elif reply != "silence":
            replying = True
            call.play(media(reply))

    if b == "answer" and persona.greeting and persona.greeting != "silence":
        replying = True  # picks up and speaks first; prompts are looked for once it is said
        call.play(media(persona.greeting))

    while True:
        ev = call.events.get()
        if isinstance(ev, Disconnected):
            clog.result = _as_resident(ev.result)
            return clog
        if isinstance(ev, PlaybackEnded):
            replying = False
            if not replies and persona.after_replies == "hangup" and clog.replies_given:
                time.sleep(0.3)
                call.hangup()
            continue
        if not isinstance(ev, Frame):
            continue
        if t_answer is None:
            t_answer = time.monotonic()
        frames += 1
        now_s = frames * 0.02
        loud = rms(ev.pcm) > SPEECH_RMS
        if not in_prompt:
            speech_frames = speech_frames + 1 if loud else 0
            if speech_frames >= 3 and not replying:
                in_prompt, silent_frames = True, 0
                prompt_start = now_s - 0.06
            continue
        if b == "hangup_mid_prompt" and now_s - prompt_start >= persona.hangup_after_s:
            clog.hung_up_mid_prompt = True
            clog.prompt_spans.append([round(prompt_start, 2), round(now_s, 2)])
            call.hangup()
            in_prompt = False
            b = "hung_up"
            continue
        if (b == "answer" and replies and not barged and barge_at[0] is not None
                and now_s - prompt_start >= barge_at[0]):
            # talk over the prompt (barge-in): the robot should stop it and take this reply
            barged = True
            barge_at.pop(0)
            clog.barge_ins.append([clog.prompts_heard + 1, round(now_s, 2)])
            give(replies.pop(0))
        silent_frames = 0 if loud else silent_frames + 1
        if silent_frames < gap_frames:
            continue
        in_prompt, speech_frames = False, 0
        clog.prompts_heard += 1
        clog.prompt_spans.append([round(prompt_start, 2), round(now_s - PROMPT_GAP_S, 2)])
        if barged:  # answered already, over this prompt
            barged = False
            continue
        if b == "silent" or b == "hung_up" or not replies:
            continue
        barge_at.pop(0)  # its barge_in_after_s, if any, was not reached: reply after the end
        reply = replies.pop(0)
        time.sleep(REPLY_DELAY_S)
        give(reply)


def _hear_message(call: Any, clog: _CallLog, t_s: float, quiet_s: float) -> None:
    """After an answered announcement (a voice assistant's greeting): listen for what the caller
    says — a message left — until *quiet_s* of silence with no speech going on, or the caller
    hangs up. Each stretch of speech goes in ``prompt_spans`` (seconds from the answer, *t_s* =
    when the announcement ended) and ``prompts_heard``."""
    from callbot.telephony import Disconnected, Frame
    from callbot.telephony.audio import rms

    loud_run = quiet = 0
    start: float | None = None
    gap = int(PROMPT_GAP_S / 0.02)
    while not call.done:
        try:
            ev = call.events.get(timeout=0.1)
        except Exception:  # noqa: BLE001 - queue.Empty
            ev = None
        if isinstance(ev, Disconnected):
            break
        if not isinstance(ev, Frame):
            if ev is None and start is None:
                quiet += 5  # no media at all: 0.1 s of nothing
                if quiet * 0.02 >= quiet_s:
                    break
            continue
        t_s += 0.02
        loud = rms(ev.pcm) > SPEECH_RMS
        if start is None:
            loud_run = loud_run + 1 if loud else 0
            quiet = 0 if loud else quiet + 1
            if loud_run >= 3:
                start, quiet = t_s - 0.06, 0
            elif quiet * 0.02 >= quiet_s:
                break
            continue
        quiet = 0 if loud else quiet + 1
        if quiet >= gap:
            clog.prompts_heard += 1
            clog.prompt_spans.append([round(start, 2), round(t_s - PROMPT_GAP_S, 2)])
            start, loud_run, quiet = None, 0, 0
    if start is not None:  # cut by the hang-up
        clog.prompts_heard += 1
        clog.prompt_spans.append([round(start, 2), round(t_s, 2)])


CALLER_PROBE_S = 0.5
"""How often a backend checks that the caller of a call still answers SIP OPTIONS."""


def _caller_address(call: Any) -> tuple[str, int] | None:
    """Host and port of the caller's SIP Contact (UDP), read on the phone's loop thread."""
    try:
        contact = call._ep.run(lambda: call._pj.getInfo().remoteContact)
    except Exception:  # noqa: BLE001 - the call is already gone
        return None
    m = re.search(r"sips?:(?:[^@>;]+@)?([^:;>]+)(?::(\d+))?", str(contact))
    return (m.group(1), int(m.group(2) or 5060)) if m else None


def caller_answers(addr: tuple[str, int], timeout: float = 1.0) -> bool:
    """Whether a SIP UA listens at *addr* (UDP): it answers OPTIONS, or at least the port is
    not closed (an ICMP port-unreachable is a no at once)."""
    tag = os.urandom(6).hex()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(addr)
            here = s.getsockname()
            s.send((f"OPTIONS sip:{addr[0]}:{addr[1]} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {here[0]}:{here[1]};rport;branch=z9hG4bK{tag}\r\n"
                    f"From: <sip:resident-probe@{here[0]}>;tag={tag}\r\nTo: <sip:{addr[0]}>\r\n"
                    f"Call-ID: probe-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                    "Content-Length: 0\r\n\r\n").encode())
            s.recv(4096)
            return True
        except ConnectionRefusedError:
            return False
        except OSError:  # a timeout: the caller's host may just be slow
            return True


def _watch_caller(call: Any, gone: threading.Event) -> None:
    """Hang up a call whose caller died (SIGKILL sends no BYE, and pjsua has no RTP timeout;
    a 200 OK nobody ACKs goes on for 32 s): two refused probes in a row, CALLER_PROBE_S apart."""
    addr = None
    misses = 0
    while not call.done:
        time.sleep(CALLER_PROBE_S)
        addr = addr or _caller_address(call)
        if addr is None:
            continue
        misses = 0 if caller_answers(addr) else misses + 1
        if misses >= 2 and not call.done:
            gone.set()
            call.hangup()
            return


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def serve_backend(index: int, table_path: str, record_dir: str, ports: Any, finished: Any,
                  bind: str = "127.0.0.1", port: int = 0, log_level: int = 0,
                  taken: Any = None, lingering: Any = None) -> None:
    """One pjsua2 process answering up to 4 calls; reports its port, each call it took and each
    it finished, and how many ended calls pjsua2 still holds (*lingering*: shared arrays the
    front counts a backend's load with)."""
    import faulthandler

    from callbot.config import SipConfig
    from callbot.telephony import Phone

    faulthandler.enable()  # a crash in the SIP stack prints where it happened
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    table = load_personas(table_path)
    rdir = Path(record_dir)
    rdir.mkdir(parents=True, exist_ok=True)
    conf = SipConfig(bind=bind, local_port=port, rtp_port=0, domain=bind, username="resident",
                     calls_per_process=CALLS_PER_BACKEND, max_call_s=3600)
    phone = Phone(conf, accept_incoming=True, log_level=log_level)
    phone.start()
    ports[index] = phone.local_port
    lock = threading.Lock()
    jsonl = rdir / "calls.jsonl"

    def handle(call: Any) -> None:
        started = time.time()
        if taken is not None:
            with lock:
                taken[index] += 1
        gone = threading.Event()
        threading.Thread(target=_watch_caller, args=(call, gone), daemon=True,
                         name=f"caller-watch-{call.number}").start()
        try:
            persona = table.lookup(call.number)
            clog = run_persona(call, persona, rdir)
            clog.started_at, clog.ended_at = started, time.time()
            clog.caller_gone = gone.is_set()
            with lock, jsonl.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(clog), ensure_ascii=False) + "\n")
        except Exception:  # noqa: BLE001 - one broken call must not stop the simulator
            log.exception("persona failed on %s", call.number)
            call.hangup()
        finally:
            call.wait(60)
            with lock:
                if lingering is not None:
                    # before it counts as finished: an ended call pjsua2 still holds (its BYE
                    # to a dead caller) must never be in neither count, or the front sends an
                    # INVITE its pjsua2 refuses (486) until the accept loop publishes it
                    lingering[index] = phone.lingering_calls
                finished[index] += 1

    parent = os.getppid()
    try:
        while os.getppid() == parent:  # the simulator went away: stop too
            if lingering is not None:
                lingering[index] = phone.lingering_calls
            try:
                call = phone.incoming.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty
                continue
            threading.Thread(target=handle, args=(call,), daemon=True,
                             name=f"resident-{call.number}").start()
    except KeyboardInterrupt:
        pass
    finally:
        phone.stop()
