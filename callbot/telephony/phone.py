"""Phone: one pjsua2 Endpoint per process, driven by one loop thread; Call: a thread-safe handle.

Only the loop thread touches pjsua2. Other threads post closures to it (``_Engine.post``) and read
events from ``Call.events``. Media callbacks (frames, end of file) run on pjmedia's clock thread
and only copy data and post.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import contextlib
import gc
import itertools
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callbot import defaults
from callbot.config import SipConfig
from callbot.exceptions import RegistrationError, TelephonyError, TooManyCallsError
from callbot.telephony.dialplan import to_sip_uri
from callbot.telephony.events import (
    Answered,
    Disconnected,
    Dtmf,
    Frame,
    PlaybackEnded,
    Ringing,
    TransferStatus,
)
from callbot.telephony.outcome import CallResult, classify

log = logging.getLogger("callbot.telephony")

EARLY_MEDIA_MAX_S = 60.0
"""Early media kept per call before the answer, seconds (8 kHz PCM, 16 KB/s)."""
GRAVE_S = 1.0
"""How long released pjsua2 ports, players and recorders are kept before they are freed, s."""
RECORDING_WAIT_S = 2.0
"""Longest we hold back Disconnected until a call's recording WAV is complete, seconds."""
CANCEL_GRACE_S = 3.0
"""After we CANCEL or BYE, how long we wait for the peer before we close the call ourselves."""

_TRANSPORT_ERR = re.compile(r"PJ_E|PJSIP_E|transport|resolve|gethostbyname|connection refused",
                            re.IGNORECASE)
_ids = itertools.count(1)
_active_phone: Phone | None = None
_active_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_stdout(quiet: bool) -> Iterator[None]:
    """Send C-level stdout to /dev/null for a moment (pjlib's start-up lines)."""
    if not quiet:
        yield
        return
    import ctypes

    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _wav_finished(path: str | None) -> bool:
    """pjmedia leaves the RIFF size 0 until it closes the file."""
    try:
        with open(path or "", "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and int.from_bytes(head[4:8], "little") > 0


def _now() -> datetime:
    return datetime.now(UTC)


class Call:
    """Handle of one call, safe to use from any thread. Events arrive on ``events``."""

    def __init__(self, engine: _Engine, number: str, uri: str, direction: str,
                 ring_timeout: float, max_call_s: float,
                 on_frame: Callable[[bytes], None] | None = None):
        self.id = next(_ids)
        self.number = number
        self.uri = uri
        self.direction = direction
        """'out' for calls we dial, 'in' for calls we receive (the resident simulator)."""
        self.remote_uri = ""
        self.events: queue.Queue[Any] = queue.Queue()
        self.frames_received = 0
        self._engine = engine
        self._on_frame_cb = on_frame
        self._early_frames = False
        self._record_ours = False
        self._ring_timeout = ring_timeout
        self._max_call_s = max_call_s
        self._early = bytearray()
        self._early_lock = threading.Lock()
        self._answered = False
        self._dtmf: list[str] = []
        self._result: CallResult | None = None
        self._done = threading.Event()
        self._t0 = time.monotonic()
        self._started_at = _now()
        self._t_answer: float | None = None
        self._answered_at: datetime | None = None
        # loop-thread only
        self._pj: Any = None
        self._port: Any = None
        self._player: Any = None
        self._pending_play: tuple[str, int] | None = None
        self._recorder: Any = None
        self._record_path: str | None = None
        self._robot_hangup = False
        self._robot_reason = ""
        self._hangup_at: float | None = None
        self._ring_timeout_hit = False
        self._no_response = False
        self._any_response = False
        self._ringing = False
        self._last_prov = 0

    # --- public API (any thread) ---
    def play(self, wav_path: str | os.PathLike[str]) -> int:
        """Start playing a WAV file into the call (replaces what is playing); returns play_id.
        ``PlaybackEnded(play_id)`` follows when it ends or is stopped."""
        p = Path(wav_path)
        if not p.is_file():
            raise FileNotFoundError(f"提示音文件不存在 (prompt WAV not found): {p}")
        with p.open("rb") as f:
            head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"不是 WAV 文件 (not a WAV file; convert it with sox): {p}")
        play_id = next(_ids)
        self._engine.post(lambda: self._engine.do_play(self, str(p), play_id))
        return play_id

    def stop_playback(self) -> None:
        """Stop the current prompt now (barge-in)."""
        self._engine.post(lambda: self._engine.stop_play(self))

    def hangup(self) -> None:
        """Hang up (CANCEL before the answer, BYE after). Idempotent."""
        self._engine.post(lambda: self._engine.do_hangup(self, "hangup by robot"))

    def send_dtmf(self, digits: str) -> None:
        """Press keys (RFC 2833)."""
        if not re.fullmatch(r"[0-9*#A-Da-d]+", digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        self._engine.post(lambda: self._engine.do_dtmf(self, digits))

    def record(self, wav_path: str | os.PathLike[str], ours: bool = False) -> None:
        """Record what the other side sends into a WAV file (complete when Disconnected
        arrives); ``ours=True`` mixes in what we play, for a whole-call recording."""
        self._record_ours = ours
        if not Path(wav_path).parent.is_dir():
            raise FileNotFoundError(f"录音目录不存在 (no such directory): {Path(wav_path).parent}")
        self._engine.post(lambda: self._engine.do_record(self, str(wav_path)))

    def bridge(self, other: Call) -> bool:
        """Join this call and *other* on the conference bridge, both ways (转人工): each hears the
        other; what either was playing stops. False when either has no audio (ended). Both stay
        joined until one ends; the caller hangs up the other."""
        return bool(self._engine.run(lambda: self._engine.do_bridge(self, other)))

    def extend(self, max_call_s: float) -> None:
        """Let an answered call last up to *max_call_s* from its answer (a bridged conversation
        outlives a robot call's ``max_call_length``)."""
        self._max_call_s = max_call_s

    def refer(self, target: str) -> None:
        """Ask the other side to call *target* (a number through the dial pattern, or a SIP URI)
        instead (SIP REFER, blind transfer); ``TransferStatus`` events follow."""
        uri = to_sip_uri(target, self._engine.conf)
        self._engine.post(lambda: self._engine.do_refer(self, uri))

    def ring(self, code: int = 180) -> None:
        """Incoming calls: send a provisional response (180 ringing, 183 with early media)."""
        self._engine.post(lambda: self._engine.do_answer(self, code))

    def answer(self, code: int = 200) -> None:
        """Incoming calls: answer."""
        self._engine.post(lambda: self._engine.do_answer(self, code))

    def reject(self, code: int = 486) -> None:
        """Incoming calls: refuse with a final status (486 busy, 603 decline, 404, 480...)."""
        self._engine.post(lambda: self._engine.do_hangup(self, f"rejected {code}", code))

    def early_media(self) -> bytes:
        """8 kHz PCM heard before the answer (183 announcements), up to 60 s."""
        with self._early_lock:
            return bytes(self._early)

    @property
    def answered(self) -> bool:
        return self._answered

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def dtmf(self) -> str:
        return "".join(self._dtmf)

    def wait(self, timeout: float | None = None) -> CallResult:
        """Block until the call is over; raises TimeoutError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"call {self.number} still going after {timeout} s")
        assert self._result is not None
        return self._result

    @property
    def result(self) -> CallResult | None:
        return self._result

    # --- media thread ---
    def _on_frame(self, pcm: bytes) -> None:
        self.frames_received += 1
        if not self._answered:
            with self._early_lock:
                if len(self._early) < EARLY_MEDIA_MAX_S * defaults.SAMPLE_RATE * 2:
                    self._early += pcm
            if self._early_frames:
                if self._on_frame_cb is not None:
                    self._on_frame_cb(pcm)
                else:
                    self.events.put(Frame(pcm, early=True))
            return
        if self._on_frame_cb is not None:
            self._on_frame_cb(pcm)
        else:
            self.events.put(Frame(pcm))

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.direction} {self.number} done={self.done}>"


class Phone:
    """A SIP line for this process. ``start()`` creates the Endpoint; ``dial()`` places calls."""

    def __init__(self, config: SipConfig, *, accept_incoming: bool = False,
                 log_level: int | None = None):
        self.config = config
        self.accept_incoming = accept_incoming
        """When True, incoming calls are put on ``incoming`` (the resident simulator uses this)."""
        self.incoming: queue.Queue[Call] = queue.Queue()
        self.log_level = log_level if log_level is not None else int(
            os.environ.get("CALLBOT_PJSIP_LOG_LEVEL", "0"))
        self._engine: _Engine | None = None

    @property
    def local_port(self) -> int:
        """The SIP port we actually listen on (useful with ``local_port = 0``)."""
        if self._engine is None:
            raise TelephonyError("Phone not started")
        return self._engine.local_port

    @property
    def running(self) -> bool:
        return self._engine is not None and self._engine.running

    def start(self) -> None:
        """Create the Endpoint on a new loop thread, register when configured."""
        global _active_phone
        if self._engine is not None:
            return
        with _active_lock:
            if _active_phone is not None:
                raise TelephonyError("这个进程已有一个 Phone (one Phone per process: pjsua2 allows "
                                     "one Endpoint); stop it first")
            _active_phone = self
        try:
            from callbot.telephony import _pj
            engine = _Engine(self, _pj)
            engine.start()
        except BaseException:
            with _active_lock:
                _active_phone = None
            raise
        self._engine = engine
        atexit.register(self.stop)

    def dial(self, number: str, ring_timeout: float | None = None, max_call_s: float | None = None,
             on_frame: Callable[[bytes], None] | None = None, early_frames: bool = False) -> Call:
        """Place a call (returns at once). NUMBER is a phone number (through the dial pattern) or
        a SIP URI. ``on_frame`` (called on the media thread with 320-byte PCM frames) replaces the
        Frame events when given. ``early_frames`` also delivers the early media (183) as it
        arrives, as ``Frame(pcm, early=True)`` (or to ``on_frame``), e.g. to recognise carrier
        announcements while ringing; ``early_media()`` keeps it either way."""
        if self._engine is None:
            raise TelephonyError("Phone.start() first")
        uri = to_sip_uri(number, self.config)
        call = Call(self._engine, number, uri, "out",
                    ring_timeout if ring_timeout is not None else self.config.ring_timeout_s,
                    max_call_s if max_call_s is not None else self.config.max_call_s, on_frame)
        call._early_frames = early_frames
        self._engine.run(lambda: self._engine.do_dial(call))  # type: ignore[union-attr]
        return call

    def calls(self) -> list[Call]:
        """Calls not yet over."""
        return [] if self._engine is None else self._engine.live_handles()

    def stop(self) -> None:
        """Hang up what is still up, destroy the Endpoint (PJSUA_DESTROY_NO_RX_MSG)."""
        global _active_phone
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            engine.stop()
        finally:
            with _active_lock:
                if _active_phone is self:
                    _active_phone = None
            try:
                atexit.unregister(self.stop)
            except Exception:  # noqa: BLE001 - interpreter shutting down
                pass

    def __enter__(self) -> Phone:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Engine:
    """Owns the Endpoint and every pjsua2 object; all methods except post/run/start/stop run on
    the loop thread."""

    def __init__(self, phone: Phone, pjmod: Any):
        self.phone = phone
        self.conf = phone.config
        self.m = pjmod
        self.pj = pjmod.pj
        self.cmds: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.running = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.local_port = 0
        self.ep: Any = None
        self.acc: Any = None
        self.calls: dict[int, Call] = {}
        self.zombies: list[Any] = []
        self._dead: list[Any] = []
        self._graveyard: collections.deque[tuple[float, Any]] = collections.deque()
        self._cooling: collections.deque[tuple[float, Any]] = collections.deque()
        self._port_pool: list[Any] = []
        self._all_ports: list[Any] = []
        self._finalizing: list[tuple[Call, float]] = []
        self._reg_code: int | None = None
        self._reg_reason = ""
        self._reg_event = threading.Event()
        self._fmt: Any = None

    # --- other threads ---
    def post(self, fn: Callable[[], None]) -> None:
        self.cmds.put(fn)

    def run(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run fn on the loop thread and return its result (or raise its exception)."""
        if threading.current_thread() is self._thread:
            return fn()
        fut: cf.Future[Any] = cf.Future()

        def job() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)
        self.post(job)
        return fut.result(timeout)

    def live_handles(self) -> list[Call]:
        return [c for c in list(self.calls.values()) if not c.done]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pjsua2-loop", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._start_error is not None:
            self._thread.join(5)
            raise self._start_error
        if self.conf.mode == "register":
            ok = self._reg_event.wait(self.conf.register_timeout_s)
            code, reason = self._reg_code, self._reg_reason
            if not ok or code is None or code // 100 != 2:
                self.stop()
                raise RegistrationError(self._reg_message(code, reason, ok), code=code)

    def _reg_message(self, code: int | None, reason: str, replied: bool) -> str:
        who = f"{self.conf.registrar} as {self.conf.auth_username or self.conf.username}"
        src = f" ({self.conf.path})" if self.conf.path else ""
        if not replied or code in (None, 0, 408):
            return (f"注册超时 (registration timed out): no reply from {who} within "
                    f"{self.conf.register_timeout_s:g} s — check [account] registrar{src} and "
                    "the network")
        if code in (401, 407):
            return (f"注册失败 {code} {reason}: 用户名或密码错误 (wrong username or password) "
                    f"for {who} — check [account] username/password{src}")
        if code == 403:
            return (f"注册被拒绝 403 {reason}: the registrar refuses {who} (account disabled "
                    f"or not allowed from this address){src}")
        if code == 404:
            return f"注册失败 404 {reason}: the registrar does not know {who}{src}"
        return f"注册失败 (registration failed) {code} {reason}: {who}{src}"

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop = True
        if self._thread is not threading.current_thread():
            self._thread.join(15)
        self._thread = None

    # --- loop thread ---
    def _loop(self) -> None:
        try:
            self._create()
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._start_error = exc if isinstance(exc, TelephonyError) else TelephonyError(
                f"SIP 启动失败 (could not start the SIP endpoint): {exc}"
                + (f" — check {self.conf.path}" if self.conf.path else ""))
            self._destroy()
            self._ready.set()
            return
        self.running = True
        self._ready.set()
        try:
            while not self._stop:
                self.ep.libHandleEvents(10)
                self._drain()
                self._tick()
        except BaseException:  # noqa: BLE001 - logged; stop cleanly below
            log.exception("pjsua2 loop crashed")
        finally:
            self.running = False
            self._shutdown()

    def _drain(self) -> None:
        if self._dead or self._graveyard:
            self._bury()
        while True:
            try:
                fn = self.cmds.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception:  # noqa: BLE001 - a failed command must not kill the loop
                log.exception("telephony command failed")

    def _bury(self) -> None:
        """Drop pjsua2 objects of ended calls and playbacks, but only GRAVE_S after they were
        released: the conference bridge removes ports asynchronously, and a port freed before
        the media clock let go of it crashes the process."""
        now = time.monotonic()
        later: list[Any] = []
        for obj in self._dead:
            if isinstance(obj, self.m.PjCall):
                # pjsua2 deletes a Call by hanging up (and deafening) whatever call holds its
                # slot id then: once pjsua gave an ended call's slot to a new call, its object
                # must wait until that slot is free again
                if obj.isActive():
                    later.append(obj)
                continue  # otherwise it goes now (a disconnected Call may be deleted)
            if isinstance(obj, self.m.FramePort):
                self._cooling.append((now + GRAVE_S, obj))  # back to the pool after a while
                continue
            # a recorder writes its WAV header when freed: keep its wait short
            delay = GRAVE_S / 4 if isinstance(obj, self.pj.AudioMediaRecorder) else GRAVE_S
            self._graveyard.append((now + delay, obj))
        self._dead = later
        if self._graveyard:
            self._graveyard = collections.deque(x for x in self._graveyard if x[0] > now)
        while self._cooling and self._cooling[0][0] <= now:
            self._port_pool.append(self._cooling.popleft()[1])

    def _create(self) -> None:
        pj, c = self.pj, self.conf
        ep = self.ep = pj.Endpoint()
        with _quiet_stdout(self.phone.log_level < 4):
            ep.libCreate()  # logs a few lines at level 4 before libInit can lower the level
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = c.calls_per_process
        cfg.uaConfig.userAgent = "callbot/0.1"
        cfg.logConfig.level = self.phone.log_level
        cfg.logConfig.consoleLevel = self.phone.log_level
        cfg.medConfig.clockRate = defaults.SAMPLE_RATE
        cfg.medConfig.sndClockRate = defaults.SAMPLE_RATE
        cfg.medConfig.sndAutoCloseTime = -1
        cfg.medConfig.ecTailLen = 0
        ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = c.local_port
        if c.bind and c.bind != "0.0.0.0":
            tcfg.boundAddress = c.bind
        if c.public_address:
            tcfg.publicAddress = c.public_address
        ttype = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP,
                 "tls": pj.PJSIP_TRANSPORT_TLS}[c.transport]
        if c.transport == "tls":
            if c.tls_ca_file:
                tcfg.tlsConfig.CaListFile = c.tls_ca_file
                tcfg.tlsConfig.verifyServer = True
            else:
                log.warning("SIP over TLS without [account] tls_ca_file: the PBX's certificate is "
                            "not verified (TLS 证书未校验)")
        try:
            tid = ep.transportCreate(ttype, tcfg)
        except pj.Error as exc:
            raise TelephonyError(
                f"无法打开 SIP 端口 (cannot open SIP {c.transport} port {c.bind}:{c.local_port}): "
                f"{exc.reason} — is another program using it? set [account] local_port"
                + (f" in {c.path}" if c.path else "")) from None
        self.local_port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        ep.libStart()
        ep.audDevManager().setNullDev()
        wanted = [x.upper() for x in c.codecs]
        for ci in ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            prio = 255 - wanted.index(name) if name in wanted else 0
            ep.codecSetPriority(ci.codecId, prio)
        self._fmt = self.m.frame_format()

        acfg = pj.AccountConfig()
        acfg.idUri = c.id_uri
        acfg.sipConfig.transportId = tid
        if c.proxy:
            acfg.sipConfig.proxies.append(c.proxy)
        if c.password:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo(
                "digest", c.realm, c.auth_username or c.username, 0, c.password))
        if c.mode == "register":
            acfg.regConfig.registrarUri = c.registrar
            acfg.regConfig.registerOnAdd = True
            acfg.regConfig.retryIntervalSec = 60
        acfg.mediaConfig.transportConfig.port = c.rtp_port
        if c.bind and c.bind != "0.0.0.0":
            acfg.mediaConfig.transportConfig.boundAddress = c.bind
        if c.public_address:
            acfg.mediaConfig.transportConfig.publicAddress = c.public_address
        self.acc = self.m.PjAccount(self)
        self.acc.create(acfg, True)

    def _shutdown(self) -> None:
        try:
            for h in list(self.calls.values()):
                if not h.done and h._pj is not None:
                    self.do_hangup(h, "phone stopped")
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and any(
                    not h.done for h in self.calls.values()):
                self.ep.libHandleEvents(10)
                self._drain()
            for h in list(self.calls.values()):
                if not h.done:
                    self._finish(h, None, "phone stopped", outcome_override="failed")
        except Exception:  # noqa: BLE001 - still destroy the library below
            log.exception("error while hanging up at stop")
        self._destroy()

    def _destroy(self) -> None:
        for h in list(self.calls.values()):
            self._release(h)
        for h, _ in self._finalizing:
            self._announce_end(h)
        self._finalizing = []
        self.calls.clear()
        self.zombies.clear()
        if self.ep is not None and (self._dead or self._graveyard):
            end = time.monotonic() + 0.1  # let the conference bridge finish pending removals
            while time.monotonic() < end:
                try:
                    self.ep.libHandleEvents(10)
                except Exception:  # noqa: BLE001
                    break
        self._dead.clear()
        self._graveyard.clear()
        # Frame ports are never freed (see _take_port): hand them to C++ and forget them; the
        # library's shutdown takes the bridge down with them.
        for port in self._all_ports:
            port.handle = None
            port.__disown__()
        self._all_ports.clear()
        self._port_pool.clear()
        self._cooling.clear()
        if self.acc is not None:
            try:
                self.acc.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self.acc = None
        gc.collect()
        if self.ep is not None:
            try:
                self.ep.libDestroy(self.pj.PJSUA_DESTROY_NO_RX_MSG)
            except Exception:  # noqa: BLE001
                log.exception("libDestroy failed")
            self.ep = None

    def _take_port(self, h: Call) -> Any:
        """A frame port for this call: a pooled one, else a new one. Ports are reused, never
        freed while the library runs (freeing one corrupts the conference bridge now and then)."""
        if self._port_pool:
            port = self._port_pool.pop()
        else:
            port = self.m.FramePort(None)
            port.createPort(f"rx{len(self._all_ports)}", self._fmt)
            self._all_ports.append(port)
        port.handle = h
        return port

    def _release(self, h: Call) -> None:
        """Drop every pjsua2 object of a call (loop thread, outside its callbacks)."""
        if h._port is not None:
            h._port.handle = None
            aud = self._audio(h) if h._pj is not None else None
            if aud is not None:  # a call we gave up on may still send early media
                try:
                    aud.stopTransmit(h._port)
                except self.pj.Error:
                    pass
        if h._player is not None:
            try:
                h._player.ended = True
            except Exception:  # noqa: BLE001
                pass
        self._dead.extend(x for x in (h._player, h._recorder, h._port) if x is not None)
        h._player = None
        h._recorder = None
        h._port = None
        if h._pj is not None:
            self._dead.append(h._pj)
            h._pj.handle = None
        h._pj = None

    # --- registration and incoming calls ---
    def on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        self._reg_code, self._reg_reason = code, reason
        if code >= 200:  # pjsip answers a 401/407 challenge itself; this is the final word
            self._reg_event.set()
        if code // 100 != 2:
            log.warning("registration: %s %s", code, reason)

    def on_incoming(self, acc: Any, call_id: int) -> None:
        h = Call(self, "", "", "in", 0, self.conf.max_call_s)
        pjc = self.m.PjCall(self, acc, h, call_id)
        h._pj = pjc
        h._any_response = True
        ci = pjc.getInfo()
        h.uri = ci.localUri
        h.remote_uri = ci.remoteUri
        m = re.search(r"sips?:([^@>;]+)@", ci.localUri)
        h.number = m.group(1) if m else ci.localUri
        self.calls[h.id] = h
        if not self.phone.accept_incoming:
            self.do_hangup(h, "not accepting calls", 480)
            return
        self.phone.incoming.put(h)

    # --- commands ---
    def do_dial(self, h: Call) -> None:
        pj = self.pj
        busy = sum(1 for x in self.calls.values() if not x.done) + len(self.zombies)
        if busy >= self.conf.calls_per_process:
            raise TooManyCallsError(
                f"这个进程已有 {busy} 路通话 (this process already holds {busy} calls; at most "
                f"{self.conf.calls_per_process} per process — run more processes)")
        pjc = self.m.PjCall(self, self.acc, h)
        h._pj = pjc
        h._t0 = time.monotonic()
        h._started_at = _now()
        self.calls[h.id] = h
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        try:
            pjc.makeCall(h.uri, prm)
        except pj.Error as exc:
            reason = f"{exc.reason} ({exc.title})" if exc.title else exc.reason
            self._finish(h, None, reason or "makeCall failed",
                         outcome_override="unreachable" if _TRANSPORT_ERR.search(
                             reason or "") else "failed")

    def do_hangup(self, h: Call, reason: str, code: int = 0) -> None:
        if h.done or h._pj is None:
            return
        if h._hangup_at is None:
            h._robot_hangup = True
            h._robot_reason = reason
            h._hangup_at = time.monotonic()
        prm = self.pj.CallOpParam()
        if code:
            prm.statusCode = code
        try:
            h._pj.hangup(prm)
        except self.pj.Error as exc:
            log.debug("hangup: %s", exc.reason)

    def do_answer(self, h: Call, code: int) -> None:
        if h.done or h._pj is None:
            return
        prm = self.pj.CallOpParam()
        prm.statusCode = code
        h._pj.answer(prm)

    def do_bridge(self, a: Call, b: Call) -> bool:
        if a.done or b.done or a._pj is None or b._pj is None:
            return False
        self.stop_play(a)
        self.stop_play(b)
        aa, ab = self._audio(a), self._audio(b)
        if aa is None or ab is None:
            return False
        aa.startTransmit(ab)
        ab.startTransmit(aa)
        if a._recorder is not None and a._record_ours:  # a whole-call recording keeps both
            ab.startTransmit(a._recorder)
        return True

    def do_refer(self, h: Call, uri: str) -> None:
        if h.done or h._pj is None:
            return
        try:
            h._pj.xfer(uri, self.pj.CallOpParam(True))
        except self.pj.Error as exc:
            h.events.put(TransferStatus(500, f"REFER failed: {exc.reason}", True))

    def on_transfer_status(self, h: Call | None, code: int, reason: str, final: bool) -> None:
        if h is None or h.done:
            return
        h.events.put(TransferStatus(code, reason, final))

    def do_dtmf(self, h: Call, digits: str) -> None:
        if h.done or h._pj is None:
            return
        h._pj.dialDtmf(digits)

    def do_record(self, h: Call, path: str) -> None:
        if h.done:
            return
        rec = self.pj.AudioMediaRecorder()
        rec.createRecorder(path)
        h._recorder, h._record_path = rec, path
        aud = self._audio(h)
        if aud is not None:
            aud.startTransmit(rec)
        if h._player is not None and h._record_ours:
            h._player.startTransmit(rec)

    def do_play(self, h: Call, path: str, play_id: int) -> None:
        if h.done or h._pj is None:
            h.events.put(PlaybackEnded(play_id, False))
            return
        self.stop_play(h)
        aud = self._audio(h)
        if aud is None:
            if h._pending_play is not None:
                h.events.put(PlaybackEnded(h._pending_play[1], False))
            h._pending_play = (path, play_id)
            return
        self._start_player(h, aud, path, play_id)

    def _start_player(self, h: Call, aud: Any, path: str, play_id: int) -> None:
        player = self.m.Player(self, h, play_id)
        try:
            player.createPlayer(path, self.pj.PJMEDIA_FILE_NO_LOOP)
        except self.pj.Error as exc:
            log.error("cannot play %s: %s", path, exc.reason)
            h.events.put(PlaybackEnded(play_id, False))
            return
        player.startTransmit(aud)
        if h._recorder is not None and h._record_ours:
            player.startTransmit(h._recorder)
        h._player = player

    def stop_play(self, h: Call) -> None:
        if h._pending_play is not None:
            h.events.put(PlaybackEnded(h._pending_play[1], False))
            h._pending_play = None
        if h._player is not None:
            self.end_playback(h, h._player.play_id, False)

    def end_playback(self, h: Call, play_id: int, completed: bool) -> None:
        player = h._player
        if player is None or player.play_id != play_id:
            return
        player.ended = True
        h._player = None
        aud = self._audio(h)
        for sink in (aud, h._recorder):
            if sink is not None:
                try:
                    player.stopTransmit(sink)
                except self.pj.Error:
                    pass
        self._dead.append(player)
        h.events.put(PlaybackEnded(play_id, completed))

    # --- callbacks (loop thread) ---
    def _audio(self, h: Call) -> Any:
        if h._pj is None:
            return None
        ci = h._pj.getInfo()
        media = ci.media
        for i in range(len(media)):
            mi = media[i]
            if mi.type == self.pj.PJMEDIA_TYPE_AUDIO and mi.status in (
                    self.pj.PJSUA_CALL_MEDIA_ACTIVE, self.pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                try:
                    return h._pj.getAudioMedia(i)
                except self.pj.Error:
                    return None
        return None

    def on_media_state(self, pjc: Any) -> None:
        h = pjc.handle
        if h is None or h.done:
            return
        aud = self._audio(h)
        if aud is None:
            return
        if h._port is None:
            h._port = self._take_port(h)
        aud.startTransmit(h._port)
        if h._recorder is not None:
            aud.startTransmit(h._recorder)
        if h._player is not None:
            h._player.startTransmit(aud)
            if h._recorder is not None and h._record_ours:
                h._player.startTransmit(h._recorder)
        if h._pending_play is not None:
            path, play_id = h._pending_play
            h._pending_play = None
            self._start_player(h, aud, path, play_id)

    def on_call_state(self, pjc: Any) -> None:
        h = pjc.handle
        ci = pjc.getInfo()
        st, code, reason = ci.state, ci.lastStatusCode, ci.lastReason
        pj = self.pj
        if h is None:  # a zombie (we already closed its handle): just let it go
            if st == pj.PJSIP_INV_STATE_DISCONNECTED:
                self.zombies = [z for z in self.zombies if z is not pjc]
                self._dead.append(pjc)
            return
        if h.direction == "out" and st in (pj.PJSIP_INV_STATE_EARLY,) and code >= 100:
            h._any_response = True
            if code in (180, 183) and code != h._last_prov:
                h._last_prov = code
                h._ringing = True
                h.events.put(Ringing(code, early_media=code == 183))
        elif st == pj.PJSIP_INV_STATE_CONFIRMED and not h._answered:
            h._any_response = True
            h._t_answer = time.monotonic()
            h._answered_at = _now()
            h._answered = True
            h.events.put(Answered())
        elif st == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._finish(h, code, reason)

    def on_dtmf(self, h: Call | None, digit: str) -> None:
        if h is None or h.done:
            return
        h._dtmf.append(digit)
        h.events.put(Dtmf(digit))

    # --- timers and the end of a call ---
    def _tick(self) -> None:
        if self._finalizing:
            self._check_recordings()
        now = time.monotonic()
        for h in list(self.calls.values()):
            if h.done:
                continue
            if h._hangup_at is not None:
                if now - h._hangup_at > CANCEL_GRACE_S:
                    if h._ring_timeout_hit and not h._answered:
                        self._finish(h, 487, "Request Terminated (ring timeout; no reply to "
                                     "CANCEL)", zombie=True)
                    else:
                        self._finish(h, 200 if h._answered else None,
                                     h._robot_reason or "no reply to BYE/CANCEL", zombie=True)
                continue
            if h.direction != "out":
                if h._answered and h._t_answer and now - h._t_answer > h._max_call_s:
                    self.do_hangup(h, "max call length")
                continue
            if not h._answered:
                waited = now - h._t0
                if not h._any_response and waited >= min(self.conf.response_timeout_s,
                                                         h._ring_timeout):
                    h._no_response = True
                    self.do_hangup(h, "no response")
                    self._finish(h, None, f"no response within {waited:.0f} s "
                                 "(no ringing or answer from that address)",
                                 outcome_override="unreachable", zombie=True)
                elif waited >= h._ring_timeout:
                    h._ring_timeout_hit = True
                    self.do_hangup(h, "ring timeout")
            elif h._t_answer is not None and now - h._t_answer > h._max_call_s:
                self.do_hangup(h, "max call length")

    def _finish(self, h: Call, code: int | None, reason: str, *,
                outcome_override: str | None = None, zombie: bool = False) -> None:
        if h.done or h._result is not None:
            return
        end = time.monotonic()
        if h._pending_play is not None or h._player is not None:
            self.stop_play(h)
        if h._no_response:
            outcome_override, code = "unreachable", None
            reason = (f"no response within {end - h._t0:.0f} s (no ringing or answer from that "
                      "address)")
        if outcome_override:
            outcome = outcome_override
        else:
            outcome = classify(code, answered=h._answered, ring_timeout=h._ring_timeout_hit,
                               ringing=h._ringing, transport_error=bool(_TRANSPORT_ERR.search(
                                   reason or "")) and not h._answered)
            if (not h._answered and h._robot_hangup and not h._ring_timeout_hit
                    and h.direction == "out" and code == 487):
                outcome, reason = "failed", f"cancelled by robot ({h._robot_reason})"
        if h._answered:
            hangup_by = "robot" if h._robot_hangup else "callee"
            if h._robot_hangup and h._robot_reason:
                reason = h._robot_reason
            sip_code: int | None = 200
        else:
            hangup_by = None
            sip_code = code or None
        ring_end = h._t_answer if h._t_answer is not None else end
        h._result = CallResult(
            number=h.number, uri=h.uri, outcome=outcome, sip_code=sip_code, reason=reason or "",
            hangup_by=hangup_by, ring_s=round(ring_end - h._t0, 2),
            talk_s=round(end - h._t_answer, 2) if h._t_answer is not None else 0.0,
            dtmf="".join(h._dtmf), started_at=h._started_at, answered_at=h._answered_at,
            ended_at=_now(),
            extra={"frames": h.frames_received, "recording": h._record_path,
                   "direction": h.direction},
        )
        pjc = h._pj
        if zombie and pjc is not None:
            self.zombies.append(pjc)
            pjc.handle = None
            h._pj = None
        self._release(h)
        self.calls.pop(h.id, None)
        if h._record_path:
            # pjmedia writes the WAV header when the dropped recorder is destroyed (10-30 ms
            # later): Disconnected waits for it so consumers can read the file at once.
            self._finalizing.append((h, time.monotonic() + RECORDING_WAIT_S))
        else:
            self._announce_end(h)

    def _announce_end(self, h: Call) -> None:
        h._done.set()
        assert h._result is not None
        h.events.put(Disconnected(h._result))

    def _check_recordings(self) -> None:
        now = time.monotonic()
        waiting = []
        for h, deadline in self._finalizing:
            if _wav_finished(h._record_path) or now > deadline:
                self._announce_end(h)
            else:
                waiting.append((h, deadline))
        self._finalizing = waiting
