"""The endpoint: this process's one pjsua2 Endpoint and the loop thread that drives it.

Only the loop thread touches pjsua2. Other threads post closures to it (``post``/``run``); each
:class:`~callbot.telephony.call.Call` owns its own state and pjsua2 objects, the endpoint keeps
the calls, registration, incoming calls and what must outlive a call (ports, graveyard, zombies).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from callbot import defaults
from callbot.exceptions import RegistrationError, TelephonyError, TooManyCallsError
from callbot.telephony.call import Call
from callbot.telephony.ports import Graveyard, PortPool

if TYPE_CHECKING:
    from callbot.telephony.phone import Phone

log = logging.getLogger("callbot.telephony")

LOOP_WAIT_MS = 100
"""Longest the loop thread sleeps in pjsua2 while a call rings or ends, or pjsua2 objects wait
to be freed, ms (pjsip's timers wake it on time). A closure posted from another thread wakes it
at once: a CRLF keep-alive datagram to our own UDP SIP transport, which pjsip ignores."""
IDLE_WAIT_MS = 500
"""The same while every call up is answered and going on, or there is none: its own timers
then are the max call length alone (seconds), and each wake-up costs the process CPU."""
POLL_MS = 10
"""The loop's sleep when it cannot be woken that way (a TCP/TLS transport), ms."""


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


def media_clock_mode() -> str:
    """Who clocks the media: ``python`` (:class:`~callbot.telephony._pj.MediaClock`, the
    default) or ``pjmedia`` (its own media and clock threads; CALLBOT_MEDIA_CLOCK=pjmedia)."""
    raw = os.environ.get("CALLBOT_MEDIA_CLOCK", "").strip().lower() or "python"
    if raw not in ("python", "pjmedia"):
        raise TelephonyError(f"CALLBOT_MEDIA_CLOCK 须是 python 或 pjmedia，不是 {raw!r}")
    return raw


def media_ptime_ms() -> int:
    """The bridge's frame, ms (defaults.MEDIA_PTIME_MS, CALLBOT_MEDIA_PTIME_MS to change it)."""
    raw = os.environ.get("CALLBOT_MEDIA_PTIME_MS", "")
    try:
        ms = int(raw) if raw else defaults.MEDIA_PTIME_MS
    except ValueError:
        ms = -1
    if not 0 < ms <= 120 or ms % defaults.FRAME_MS:
        raise TelephonyError(f"CALLBOT_MEDIA_PTIME_MS 须是 {defaults.FRAME_MS} 的倍数 (≤ 120)，"
                             f"不是 {raw!r}")
    return ms


class Endpoint:
    """Owns the pjsua2 Endpoint and the loop thread; all methods except post/run/start/stop
    run on the loop thread."""

    log = log

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
        """pjsua2 calls whose handle we closed before pjsua2 disconnected them."""
        self.ports = PortPool(pjmod, None)
        self.graveyard = Graveyard(pjmod, self.ports)
        self._finalizing: list[tuple[Call, float]] = []
        self._reg_code: int | None = None
        self._reg_reason = ""
        self._reg_event = threading.Event()
        self.ptime_ms = media_ptime_ms()
        self.clock_mode = media_clock_mode()
        self.clock: Any = None
        """The media clock thread (``_pj.MediaClock``), None with pjmedia's own."""
        self._wake: socket.socket | None = None
        self._wake_to: tuple[str, int] | None = None

    # --- other threads ---
    def post(self, fn: Callable[[], None]) -> None:
        self.cmds.put(fn)
        to = self._wake_to
        if to is not None and threading.current_thread() is not self._thread:
            try:
                self._wake.sendto(b"\r\n\r\n", to)  # type: ignore[union-attr]
            except OSError:  # the loop still runs its commands within LOOP_WAIT_MS
                pass

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
        self.m.name_thread("pjsua2-loop")
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
                self.ep.libHandleEvents(self._wait_ms() if self.cmds.empty() else 0)
                self._drain()
                self._tick()
        except BaseException:  # noqa: BLE001 - logged; stop cleanly below
            log.exception("pjsua2 loop crashed")
        finally:
            self.running = False
            self._shutdown()

    def _wait_ms(self) -> int:
        """How long the loop may sleep in pjsua2 now (LOOP_WAIT_MS, IDLE_WAIT_MS, POLL_MS)."""
        if self._wake_to is None:
            return POLL_MS
        if self._finalizing or self.graveyard.pending or self.zombies or any(
                not h.settled for h in self.calls.values()):
            return LOOP_WAIT_MS
        return IDLE_WAIT_MS

    def _drain(self) -> None:
        if self.graveyard.pending:
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
        """Drop pjsua2 objects of ended calls and playbacks once they may go (ports.GRAVE_S)."""
        self.graveyard.bury()

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
        cfg.medConfig.audioFramePtime = self.ptime_ms  # RTP keeps the codec's ptime (20 ms)
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
        if c.transport == "udp":
            self._wake_on(c.bind)
        ep.libStart()
        self._clock_media()
        wanted = [x.upper() for x in c.codecs]
        for ci in ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            prio = 255 - wanted.index(name) if name in wanted else 0
            ep.codecSetPriority(ci.codecId, prio)
        self.ports.fmt = self.m.frame_format(self.ptime_ms)

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
        if self.clock is not None:
            self.clock.start()

    def _clock_media(self) -> None:
        """Our media clock thread (``_pj.MediaClock``, started once the account exists), or
        pjmedia's own threads with the null sound device (CALLBOT_MEDIA_CLOCK=pjmedia, or a
        pjsua2 build whose symbols are not the ones known)."""
        if self.clock_mode == "python":
            try:
                self.clock = self.m.MediaClock(self.ep, self.ptime_ms)
            except (KeyError, OSError, AttributeError) as exc:  # another pjsua2 build
                log.warning("pjmedia clocks the media (%s)", exc)
        if self.clock is None:
            self.ep.audDevManager().setNullDev()

    def _wake_on(self, bind: str | None) -> None:
        """Let other threads wake the loop: datagrams to our SIP transport (``post``)."""
        host = bind if bind and bind not in ("0.0.0.0", "::") else "127.0.0.1"
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._wake = socket.socket(family, socket.SOCK_DGRAM)
            self._wake.setblocking(False)
            self._wake_to = (host, self.local_port)
        except OSError:
            log.warning("no wake-up socket: the pjsua2 loop polls every %d ms", POLL_MS)

    def _shutdown(self) -> None:
        try:
            for h in list(self.calls.values()):
                h.hangup_now("phone stopped")
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and any(
                    not h.done for h in self.calls.values()):
                self.ep.libHandleEvents(10)
                self._drain()
            for h in list(self.calls.values()):
                h.finish(None, "phone stopped", outcome_override="failed")
        except Exception:  # noqa: BLE001 - still destroy the library below
            log.exception("error while hanging up at stop")
        self._destroy()

    def _destroy(self) -> None:
        for h in list(self.calls.values()):
            h.release()
        for h, _ in self._finalizing:
            h.announce_end()
        self._finalizing = []
        self.calls.clear()
        self.zombies.clear()
        if self.ep is not None and self.graveyard.pending:
            end = time.monotonic() + 0.1  # let the conference bridge finish pending removals
            while time.monotonic() < end:
                try:
                    self.ep.libHandleEvents(10)
                except Exception:  # noqa: BLE001
                    break
        self.graveyard.clear()
        self.ports.disown()  # frame ports are never freed (see PortPool)
        if self.acc is not None:
            try:
                self.acc.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self.acc = None
        gc.collect()
        if self.clock is not None:
            self.clock.stop()
            self.clock = None
        if self.ep is not None:
            try:
                self.ep.libDestroy(self.pj.PJSUA_DESTROY_NO_RX_MSG)
            except Exception:  # noqa: BLE001
                log.exception("libDestroy failed")
            self.ep = None
        self._wake_to = None
        if self._wake is not None:
            self._wake.close()
            self._wake = None

    # --- calls (loop thread) ---
    def do_dial(self, h: Call) -> None:
        busy = sum(1 for x in self.calls.values() if not x.done) + len(self.zombies)
        if busy >= self.conf.calls_per_process:
            raise TooManyCallsError(
                f"这个进程已有 {busy} 路通话 (this process already holds {busy} calls; at most "
                f"{self.conf.calls_per_process} per process — run more processes)")
        self.calls[h.id] = h
        h.place(self.acc)

    def forget(self, h: Call) -> None:
        """A call ended: no more timers for it."""
        self.calls.pop(h.id, None)

    def keep_zombie(self, pjc: Any) -> None:
        """Keep a pjsua2 call whose handle was closed until pjsua2 disconnects it."""
        pjc.handle = None
        self.zombies.append(pjc)

    def finalize_later(self, h: Call, deadline: float) -> None:
        """Announce *h*'s end once its recording WAV is complete (or at *deadline*)."""
        self._finalizing.append((h, deadline))

    # --- registration and incoming calls (pjsua2 callbacks, loop thread) ---
    def on_reg_state(self, code: int, reason: str, expiration: int) -> None:
        self._reg_code, self._reg_reason = code, reason
        if code >= 200:  # pjsip answers a 401/407 challenge itself; this is the final word
            self._reg_event.set()
        if code // 100 != 2:
            log.warning("registration: %s %s", code, reason)

    def on_incoming(self, acc: Any, call_id: int) -> None:
        h = Call(self, "", "", "in", 0, self.conf.max_call_s)
        h.adopt(acc, call_id)
        self.calls[h.id] = h
        if not self.phone.accept_incoming:
            h.hangup_now("not accepting calls", 480)
            return
        self.phone.incoming.put(h)

    def on_call_state(self, pjc: Any) -> None:
        ci = pjc.getInfo()
        h = pjc.handle
        if h is None:  # a zombie (we already closed its handle): just let it go
            if ci.state == self.pj.PJSIP_INV_STATE_DISCONNECTED:
                self.zombies = [z for z in self.zombies if z is not pjc]
                self.graveyard.add(pjc)
            return
        h.on_call_state(ci.state, ci.lastStatusCode, ci.lastReason)

    # --- timers and the end of a call ---
    def _tick(self) -> None:
        if self.clock is not None:
            self.clock.media = bool(self.calls or self.zombies or self.graveyard.pending)
        if self._finalizing:
            self._check_recordings()
        now = time.monotonic()
        for h in list(self.calls.values()):
            h.tick(now)

    def _check_recordings(self) -> None:
        now = time.monotonic()
        waiting = []
        for h, deadline in self._finalizing:
            if h.recording_finished() or now > deadline:
                h.announce_end()
            else:
                waiting.append((h, deadline))
        self._finalizing = waiting
