"""The resident simulator: a SIP peer that plays residents by the number dialled.

A persona table (YAML or CSV) says what each number does: answer and reply after each prompt it
hears (or talk over it: ``barge_in_after_s``), press keys, be busy, not answer, reject, hang up mid-prompt, stay silent, answer after N
seconds, or play an early-media announcement and then fail. Every call is recorded (WAV) and
logged (``calls.jsonl``) in the record directory, so tests can check what the resident heard.

One pjsua2 process holds at most 4 calls, so the simulator scales by processes: with
``procs > 1`` a small stateless SIP front (this process, no pjsua2) listens on the public port and
forwards each new INVITE to the least-loaded backend process; backends answer with their own
Contact, so in-dialog requests and RTP go to them directly.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing as mp
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from callbot.exceptions import ConfigError

log = logging.getLogger("callbot.residents")

BEHAVIOURS = ("answer", "silent", "busy", "no_answer", "reject", "hangup_mid_prompt",
              "early_media_fail")
"""What a persona can do (see the module docstring and docs/telephony.md)."""

CALLS_PER_BACKEND = 4
"""pjsua2's per-process call limit; the front never gives a backend more."""
SPEECH_RMS = 300.0
"""Received audio above this RMS (16-bit) counts as the robot speaking."""
PROMPT_GAP_S = 0.6
"""Silence after speech that ends a prompt, seconds."""
REPLY_DELAY_S = 0.25
"""Pause between the end of a prompt and the resident's reply, seconds."""

_FIELDS = ("number", "name", "behaviour", "ring_s", "replies", "code", "announcement",
           "hangup_after_s", "after_replies", "barge_in_after_s", "greeting")
_REPLY_FIELDS = ("reply", "barge_in_after_s")
"""Keys of a reply written as a mapping (YAML): ``{reply: xuyao.wav, barge_in_after_s: 0.8}``."""


@dataclass(frozen=True)
class Persona:
    """One simulated resident."""

    number: str
    """Dialled number (user part of the To URI); ``*`` is the default for unlisted numbers."""
    behaviour: str = "answer"
    name: str = ""
    ring_s: float = 0.0
    """Seconds of ringing (180) before answering."""
    replies: tuple[str, ...] = ()
    """One per prompt heard, in order: a WAV path, ``say:文本`` (espeak-ng), ``dtmf:12#`` or
    ``silence``."""
    code: int | None = None
    """Final status for ``reject`` (default 603) and ``early_media_fail`` (default 480)."""
    announcement: str | None = None
    """WAV or ``say:文本`` played as early media (183) by ``early_media_fail``."""
    hangup_after_s: float = 1.0
    """``hangup_mid_prompt``: hang up this long after the first prompt starts."""
    after_replies: str = "wait"
    """``wait`` for the robot to hang up, or ``hangup`` once the last reply was given."""
    greeting: str | None = None
    """``answer``: say this (WAV or ``say:文本``) as soon as the call is answered, before any
    prompt is heard — a person picking up a phone (the duty phone of a 转人工 test)."""
    reply_barge_in_s: tuple[float | None, ...] = ()
    """Per reply (same order as ``replies``): start it this many seconds after the prompt it
    answers starts, talking over the prompt; None (or missing) = reply after the prompt ended."""

    def barge_in_after(self, i: int) -> float | None:
        """When reply *i* talks over its prompt (seconds into the prompt), or None."""
        return self.reply_barge_in_s[i] if i < len(self.reply_barge_in_s) else None


class PersonaTable:
    """Personas by number, loaded from YAML or CSV; relative WAV paths are relative to the file."""

    def __init__(self, personas: list[Persona], path: str = "<memory>"):
        self.path = path
        self.by_number = {p.number: p for p in personas}

    def lookup(self, number: str) -> Persona:
        p = self.by_number.get(number) or self.by_number.get("*")
        return p or Persona(number=number, behaviour="silent")

    def __len__(self) -> int:
        return len(self.by_number)


def _err(path: str, where: str, msg: str) -> ConfigError:
    return ConfigError(msg, path=path, key=where)


def _media_ref(path: str, base: Path, where: str, value: str, allow_dtmf: bool) -> str:
    v = value.strip()
    if v in ("silence", "-", ""):
        return "silence"
    if v.startswith("say:"):
        if not v[4:].strip():
            raise _err(path, where, "say: needs some text, e.g. say:好的")
        return v
    if v.startswith("dtmf:"):
        if not allow_dtmf:
            raise _err(path, where, "an announcement cannot be DTMF")
        if not re.fullmatch(r"[0-9*#A-Da-d]+", v[5:]):
            raise _err(path, where, f"not DTMF digits: {v[5:]!r}")
        return v
    p = Path(v)
    if not p.is_absolute():
        p = base / p
    if not p.is_file():
        raise _err(path, where, f"WAV file not found: {p}")
    return str(p)


def _barge_s(path: str, where: str, v: Any) -> float | None:
    if v in (None, ""):
        return None
    if isinstance(v, bool):
        v = "yes" if v else "no"  # YAML's yes/no: not seconds
    try:
        s = float(v)
    except (TypeError, ValueError):
        raise _err(path, where, f"expected seconds into the prompt (e.g. 0.8), got {v!r}") \
            from None
    if not 0 <= s <= 600:
        raise _err(path, where, f"must be 0-600 seconds into the prompt, got {v}")
    return s


def _persona(raw: dict[str, Any], path: str, where: str, base: Path) -> Persona:
    unknown = set(raw) - set(_FIELDS)
    if unknown:
        raise _err(path, where, f"unknown field(s) {', '.join(sorted(unknown))}; fields are "
                   f"{', '.join(_FIELDS)}")
    number = str(raw.get("number") or "").strip()
    if not number:
        raise _err(path, where, "number is required ('*' for the default persona)")
    behaviour = str(raw.get("behaviour") or "answer").strip()
    if behaviour not in BEHAVIOURS:
        raise _err(path, f"{where} behaviour", f"unknown behaviour {behaviour!r}; one of "
                   f"{', '.join(BEHAVIOURS)}")
    kw: dict[str, Any] = {"number": number, "behaviour": behaviour,
                          "name": str(raw.get("name") or "")}
    who = f"{where} (number {number})"  # barge-in errors name the persona
    for key in ("ring_s", "hangup_after_s"):
        v = raw.get(key)
        if v not in (None, ""):
            try:
                kw[key] = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise _err(path, f"{where} {key}", f"expected seconds, got {v!r}") from None
            if kw[key] < 0:
                raise _err(path, f"{where} {key}", "must not be negative")
    v = raw.get("code")
    if v not in (None, ""):
        try:
            kw["code"] = int(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _err(path, f"{where} code", f"expected a SIP status, got {v!r}") from None
        if not 400 <= kw["code"] <= 699:
            raise _err(path, f"{where} code", f"must be a 4xx-6xx status, got {v}")
    replies = raw.get("replies")
    if isinstance(replies, str):
        replies = [r for r in replies.split("|")]
    if replies is None:
        replies = []
    if not isinstance(replies, list):
        raise _err(path, f"{where} replies", "expected a list (CSV: separated by |)")
    default_barge = _barge_s(path, f"{who} barge_in_after_s", raw.get("barge_in_after_s"))
    refs: list[str] = []
    barge: list[float | None] = []
    for i, r in enumerate(replies, 1):
        rwhere = f"{where} replies[{i}]"
        if isinstance(r, dict):
            bad = set(r) - set(_REPLY_FIELDS)
            if bad or "reply" not in r:
                what = f"unknown key(s) {', '.join(sorted(map(str, bad)))}" if bad else \
                    "no 'reply'"
                raise _err(path, f"{who} replies[{i}]", f"{what}; a reply written as a mapping "
                           "is {reply: WAV|say:…|dtmf:…|silence, barge_in_after_s: seconds}")
            b = _barge_s(path, f"{who} replies[{i}] barge_in_after_s",
                         r.get("barge_in_after_s"))
            r = r["reply"]
        else:
            b = None
        if b is None:
            b = default_barge
        refs.append(_media_ref(path, base, rwhere, str(r), True))
        barge.append(b)
    kw["replies"] = tuple(refs)
    if default_barge is not None and not refs:
        raise _err(path, f"{who} barge_in_after_s", "there are no replies to talk over the "
                   "prompt with (add replies)")
    if any(b is not None for b in barge):
        if behaviour != "answer":
            raise _err(path, f"{who} barge_in_after_s", "only an 'answer' persona replies, so "
                       f"only it can talk over a prompt (behaviour is {behaviour})")
        kw["reply_barge_in_s"] = tuple(barge)
    if raw.get("greeting"):
        if behaviour != "answer":
            raise _err(path, f"{who} greeting", "only an 'answer' persona speaks when it picks up")
        kw["greeting"] = _media_ref(path, base, f"{where} greeting", str(raw["greeting"]), False)
    if raw.get("announcement"):
        kw["announcement"] = _media_ref(path, base, f"{where} announcement",
                                        str(raw["announcement"]), False)
    elif behaviour == "early_media_fail":
        raise _err(path, f"{where} announcement", "early_media_fail needs an announcement")
    after = str(raw.get("after_replies") or "wait")
    if after not in ("wait", "hangup"):
        raise _err(path, f"{where} after_replies", "must be wait or hangup")
    kw["after_replies"] = after
    return Persona(**kw)


def load_personas(path: str | os.PathLike[str]) -> PersonaTable:
    """Read a persona table (.yaml/.yml or .csv); errors name the file, the row and the field."""
    p = Path(path)
    sp = str(p)
    if not p.is_file():
        raise ConfigError("persona table not found", path=sp)
    base = p.parent
    rows: list[tuple[str, dict[str, Any]]] = []
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", path=sp) from None
        if isinstance(doc, dict):
            items = doc.get("residents")
            if items is None:
                raise ConfigError("expected a top-level 'residents:' list", path=sp)
            if doc.get("default"):
                rows.append(("default", {"number": "*", **doc["default"]}))
        else:
            items = doc
        if not isinstance(items, list):
            raise ConfigError("'residents' must be a list of personas", path=sp)
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise _err(sp, f"residents[{i}]", "each persona is a mapping (number: ...)")
            rows.append((f"residents[{i}]", item))
    elif p.suffix.lower() == ".csv":
        with p.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "number" not in reader.fieldnames:
                raise ConfigError(f"CSV needs a header row with at least 'number'; columns: "
                                  f"{', '.join(_FIELDS)}", path=sp)
            for i, row in enumerate(reader, 2):
                rows.append((f"row {i}", {k: v for k, v in row.items() if k and v not in
                                          (None, "")}))
    else:
        raise ConfigError("persona table must be .yaml, .yml or .csv", path=sp)
    personas = [_persona(raw, sp, where, base) for where, raw in rows]
    seen: set[str] = set()
    for per in personas:
        if per.number in seen:
            raise ConfigError(f"number {per.number} appears twice", path=sp)
        seen.add(per.number)
    return PersonaTable(personas, sp)


# --- one call ------------------------------------------------------------------------------------

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


def _as_resident(res: Any) -> dict[str, Any]:
    d = res.to_json()
    d["hangup_by"] = {"robot": "resident", "callee": "caller"}.get(d["hangup_by"])
    return d


def run_persona(call: Any, persona: Persona, record_dir: Path) -> _CallLog:
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

    b = persona.behaviour
    if b == "busy":
        call.reject(persona.code or 486)
    elif b == "reject":
        call.reject(persona.code or 603)
    elif b == "no_answer":
        call.ring(180)
    elif b == "early_media_fail":
        call.ring(183)
        call.play(media(persona.announcement or "silence"))
        deadline = time.monotonic() + max(persona.ring_s, 0.0) + 30
        while time.monotonic() < deadline and not call.done:
            try:
                ev = call.events.get(timeout=0.1)
            except Exception:  # noqa: BLE001 - queue.Empty
                continue
            if isinstance(ev, PlaybackEnded):
                break
        if persona.ring_s:
            sleep_unless_done(persona.ring_s)
        call.reject(persona.code or 480)
    else:
        call.ring(180)
        if sleep_unless_done(persona.ring_s) and not call.done:
            record_dir.mkdir(parents=True, exist_ok=True)
            rec = record_dir / f"{call.number}-{os.getpid()}-{call.id}.wav"
            clog.recording = str(rec)
            call.record(rec)
            call.answer(200)
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


# --- a backend process ---------------------------------------------------------------------------

def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def serve_backend(index: int, table_path: str, record_dir: str, ports: Any, finished: Any,
                  bind: str = "127.0.0.1", port: int = 0, log_level: int = 0) -> None:
    """One pjsua2 process answering up to 4 calls; reports its port and each finished call."""
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
        try:
            persona = table.lookup(call.number)
            clog = run_persona(call, persona, rdir)
            with lock, jsonl.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(clog), ensure_ascii=False) + "\n")
        except Exception:  # noqa: BLE001 - one broken call must not stop the simulator
            log.exception("persona failed on %s", call.number)
            call.hangup()
        finally:
            call.wait(60)
            with lock:
                finished[index] += 1

    parent = os.getppid()
    try:
        while os.getppid() == parent:  # the simulator went away: stop too
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


# --- the front: a stateless SIP forwarder ---------------------------------------------------------

_HDR = re.compile(rb"^(via|v|call-id|i|cseq)\s*:\s*(.*)$", re.IGNORECASE)


class Front:
    """Forwards each new INVITE to the least-loaded backend (by Call-ID, so CANCEL and the ACK of a
    failure follow it); strips its Via from responses. In-dialog requests bypass it."""

    def __init__(self, sock: socket.socket, backends: list[tuple[str, int]], finished: Any,
                 alive: Any = None):
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.backends = backends
        self.finished = finished
        """Calls each backend has finished (shared memory, written by the backends)."""
        self.sent = [0] * len(backends)
        """New INVITEs sent to each backend: sent - finished = its live calls."""
        self.alive = alive or (lambda i: True)
        """alive(i): False once backend i's process has died (it gets no more calls)."""
        self.route: dict[bytes, tuple[int, float]] = {}
        self.origin: dict[bytes, tuple[str, int]] = {}

    def _pick(self) -> int | None:
        best, best_load = None, CALLS_PER_BACKEND
        for i in range(len(self.backends)):
            load = self.sent[i] - self.finished[i]
            if load < best_load and self.alive(i):
                best, best_load = i, load
        return best

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines or not lines[0]:
            return
        call_id = b""
        via_idx = -1
        for i, line in enumerate(lines[1:], 1):
            m = _HDR.match(line)
            if not m:
                continue
            name = m.group(1).lower()
            if name in (b"call-id", b"i"):
                call_id = m.group(2).strip()
            elif name in (b"via", b"v") and via_idx < 0:
                via_idx = i
        if lines[0].startswith(b"SIP/2.0"):
            self._response(lines, via_idx, sep, body)
        else:
            self._request(lines, via_idx, call_id, sep, body, addr)

    def _request(self, lines: list[bytes], via_idx: int, call_id: bytes, sep: bytes, body: bytes,
                 addr: tuple[str, int]) -> None:
        method = lines[0].split(b" ", 1)[0]
        if via_idx < 0 or not call_id:
            return
        target = self.route.get(call_id)
        if target is None:
            if method != b"INVITE":
                if method != b"ACK":
                    self._reply(lines, 481 if method != b"OPTIONS" else 200, addr)
                return
            idx = self._pick()
            if idx is None:
                self._reply(lines, 503, addr, b"Retry-After: 1\r\n")
                return
            self.sent[idx] += 1
            self.route[call_id] = (idx, time.monotonic())
        else:
            idx = target[0]
        top = lines[via_idx]
        m = re.search(rb"branch=([^;,\s]+)", top)
        branch = b"z9hG4bK" + hashlib.md5((m.group(1) if m else top) + call_id
                                          ).hexdigest()[:20].encode()
        self.origin[branch] = addr
        via = f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=".encode() + branch
        out = [lines[0], via, *lines[1:]]
        self.sock.sendto(b"\r\n".join(out) + sep + body, self.backends[idx])

    def _response(self, lines: list[bytes], via_idx: int, sep: bytes, body: bytes) -> None:
        if via_idx < 0:
            return
        m = re.search(rb"branch=([^;,\s]+)", lines[via_idx])
        addr = self.origin.get(m.group(1)) if m else None
        if addr is None:
            return
        del lines[via_idx]
        self.sock.sendto(b"\r\n".join(lines) + sep + body, addr)

    def _reply(self, lines: list[bytes], code: int, addr: tuple[str, int],
               extra: bytes = b"") -> None:
        reason = {200: b"OK", 481: b"Call/Transaction Does Not Exist",
                  503: b"Service Unavailable (all simulated residents busy)"}[code]
        keep = []
        for ln in lines[1:]:
            if re.match(rb"^(to|t)\s*:", ln, re.IGNORECASE) and b"tag=" not in ln:
                ln += b";tag=simfront"
            if re.match(rb"^(via|v|from|f|to|t|call-id|i|cseq)\s*:", ln, re.IGNORECASE):
                keep.append(ln)
        msg = b"SIP/2.0 %d %s\r\n" % (code, reason) + b"\r\n".join(keep) + b"\r\n" + extra
        self.sock.sendto(msg + b"Content-Length: 0\r\n\r\n", addr)

    def expire(self, max_age: float = 300.0) -> None:
        now = time.monotonic()
        self.route = {k: v for k, v in self.route.items() if now - v[1] < max_age}
        if len(self.origin) > 10000:
            self.origin = dict(list(self.origin.items())[-5000:])


# --- the whole simulator -------------------------------------------------------------------------

@dataclass
class Simulator:
    """N backend processes (and a front when N > 1). ``start()`` returns once all listen."""

    table_path: str
    record_dir: str
    port: int = 5070
    procs: int = 1
    bind: str = "127.0.0.1"
    log_level: int = 0
    restarts: int = 0
    """Backends that died and were started again (a crash is logged with its stack)."""
    _children: list[Any] = field(default_factory=list)
    _front: Front | None = None
    _front_thread: threading.Thread | None = None
    _watch_thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    backend_ports: list[int] = field(default_factory=list)

    @property
    def capacity(self) -> int:
        return self.procs * CALLS_PER_BACKEND

    def start(self, timeout: float = 30.0) -> None:
        load_personas(self.table_path)  # fail early with a clear error
        sock = None
        if self.procs > 1:
            # The front's port is bound before any backend starts: a backend binds an ephemeral
            # port, which could otherwise be the very port the front is about to take.
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            try:
                sock.bind((self.bind, self.port))
            except OSError as exc:
                sock.close()
                raise RuntimeError(f"居民模拟器端口被占用 (cannot bind {self.bind}:{self.port}: "
                                   f"{exc})") from None
        ctx = self._ctx = mp.get_context("spawn")
        self._ports = ctx.Array("i", self.procs)
        self._finished = ctx.Array("i", self.procs, lock=False)
        for i in range(self.procs):
            self._children.append(self._spawn(i))
        deadline = time.monotonic() + timeout
        while any(self._ports[i] == 0 for i in range(self.procs)):
            if time.monotonic() > deadline or any(not p.is_alive() for p in self._children):
                if sock is not None:
                    sock.close()
                self.stop()
                raise RuntimeError("居民模拟器启动失败 (resident simulator did not start; is port "
                                   f"{self.port} free?)")
            time.sleep(0.05)
        self.backend_ports = [self._ports[i] for i in range(self.procs)]
        if sock is not None:
            front = self._front = Front(sock, [(self.bind, p) for p in self.backend_ports],
                                        self._finished, alive=self._backend_alive)
            self._front_thread = threading.Thread(target=self._run_front, args=(front,),
                                                  daemon=True, name="resident-front")
            self._front_thread.start()
        self._watch_thread = threading.Thread(target=self._watch, daemon=True,
                                              name="resident-watch")
        self._watch_thread.start()

    def _spawn(self, i: int) -> Any:
        p = self._ctx.Process(target=serve_backend, name=f"resident-{i}", daemon=True, args=(
            i, self.table_path, self.record_dir, self._ports, self._finished, self.bind,
            self.port if self.procs == 1 else 0, self.log_level))
        p.start()
        return p

    def _watch(self) -> None:
        """Start a backend again when it died, so a long run survives a crash."""
        while not self._stop.wait(0.5):
            for i, p in enumerate(list(self._children)):
                if p.is_alive() or self._stop.is_set():
                    continue
                log.error("resident backend %d died (exit code %s); starting it again", i,
                          p.exitcode)
                self._ports[i] = 0
                self._children[i] = self._spawn(i)
                self.restarts += 1
                deadline = time.monotonic() + 20
                while self._ports[i] == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.backend_ports[i] = self._ports[i]
                if self._front is not None:
                    self._front.backends[i] = (self.bind, self._ports[i])
                    self._front.sent[i] = self._finished[i]

    def _run_front(self, front: Front) -> None:
        last = time.monotonic()
        with front.sock:
            while not self._stop.is_set():
                r, _, _ = select.select([front.sock], [], [], 0.2)
                if r:
                    try:
                        data, addr = front.sock.recvfrom(65535)
                    except OSError:  # ICMP port unreachable from an earlier send: keep serving
                        continue
                    try:
                        front.handle(data, addr)
                    except Exception:  # noqa: BLE001 - a malformed datagram is dropped
                        log.exception("front: bad datagram from %s", addr)
                if time.monotonic() - last > 30:
                    front.expire()
                    last = time.monotonic()

    def _backend_alive(self, i: int) -> bool:
        return bool(self._children[i].is_alive() and self._ports[i])

    def alive(self) -> bool:
        """True while every backend process runs."""
        return bool(self._children) and all(p.is_alive() for p in self._children)

    def stop(self) -> None:
        self._stop.set()
        if self._watch_thread is not None:
            self._watch_thread.join(25)
        for p in self._children:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        for p in self._children:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(2)
        self._children.clear()
        if self._front_thread is not None:
            self._front_thread.join(2)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_call_log(record_dir: str | os.PathLike[str], wait_for: Any = None,
                  timeout: float = 5.0) -> list[dict[str, Any]]:
    """What the simulator logged per call (``calls.jsonl``), oldest first.

    A resident logs its call just after the caller saw it end (its recording must be finished
    first), so pass ``wait_for`` — a number of calls, or the numbers that must each appear — to
    wait up to ``timeout`` seconds for them."""
    p = Path(record_dir) / "calls.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        rows = ([json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
                if p.exists() else [])
        if wait_for is None:
            return rows
        if isinstance(wait_for, int):
            done = len(rows) >= wait_for
        else:
            seen = {r["number"] for r in rows}
            done = all(str(n) in seen for n in wait_for)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def iter_call_log(record_dir: str | os.PathLike[str], number: str) -> Iterator[dict[str, Any]]:
    return (c for c in read_call_log(record_dir) if c["number"] == number)
