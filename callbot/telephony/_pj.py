"""pjsua2 subclasses (imported only by ``Phone.start``). Callbacks marked *media thread* run on
pjmedia's clock thread and must only copy data and post to queues."""

from __future__ import annotations

import ctypes
import os
import threading
from typing import TYPE_CHECKING

from callbot import defaults

try:
    import pjsua2 as pj
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    from callbot.exceptions import MissingExtraError

    raise MissingExtraError("pjsua2", "sip") from exc

if TYPE_CHECKING:
    from callbot.telephony.call import Call
    from callbot.telephony.endpoint import Endpoint

_PAIR = ctypes.c_size_t * 2
_SAFE_COPY = os.environ.get("CALLBOT_SAFE_FRAME_COPY") == "1"
"""CALLBOT_SAFE_FRAME_COPY=1: copy frames through SWIG (~0.6 ms a frame) instead of ctypes."""


def vector_bytes(vec: pj.ByteVector, size: int) -> bytes:
    """Copy a ``std::vector<unsigned char>`` of ``size`` bytes without iterating it in Python
    (~70 µs a frame); falls back to the slow copy when its pointers do not look right."""
    if size <= 0 or size > 65536:
        return b""
    if _SAFE_COPY:
        return bytes(vec)
    start, finish = _PAIR.from_address(int(vec.this))
    if finish - start != size or start < 65536:
        return bytes(vec)
    return ctypes.string_at(start, size)


_kept = threading.local()
"""Set on a pjmedia thread once its Python thread state is kept (:func:`keep_thread_state`)."""


def keep_thread_state() -> None:
    """Keep the calling C thread's Python thread state for good (pjmedia's clock thread, which
    calls into Python once a bridge tick per call).

    SWIG's director takes the GIL with ``PyGILState_Ensure`` and gives it back with
    ``PyGILState_Release``; on a thread Python did not start, that pair creates a thread state
    and deletes it again on every callback (its frame stack with it: an mmap and munmap each
    time, most of the clock thread's system time). One more ``Ensure`` that is never released
    keeps the count above zero, so each later callback only takes and drops the GIL. Call it
    with the GIL held, from a callback: a no-op once done on this thread (the thread-local
    mark lives exactly as long as the kept state)."""
    if not getattr(_kept, "on", False):
        ctypes.pythonapi.PyGILState_Ensure()
        _kept.on = True


def name_thread(name: str) -> None:
    """Give the calling thread its name in the kernel too (``top -H``, ``perf``, /proc), at
    most 15 bytes; nothing where prctl is missing."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class PjAccount(pj.Account):
    def __init__(self, engine: Endpoint):
        super().__init__()
        self.engine = engine

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.engine.on_reg_state(prm.code, prm.reason, prm.expiration)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.engine.on_incoming(self, prm.callId)


class PjCall(pj.Call):
    def __init__(self, engine: Endpoint, acc: pj.Account, handle: Call, call_id: int = -1):
        super().__init__(acc, call_id)
        self.engine = engine
        self.handle = handle
        self.invite_tsx = 0
        """Address of our INVITE's client transaction (pjsip_transaction*) while it is still
        sending (no response yet); 0 otherwise. ``stop_invite`` ends it."""

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.engine.on_call_state(self)

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = e.body.tsxState.tsx  # keep each proxy in a variable: chained access may dangle
        if tsx.role != pj.PJSIP_ROLE_UAC or tsx.method != "INVITE":
            return
        if tsx.state == pj.PJSIP_TSX_STATE_CALLING and tsx.statusCode < 100:
            self.invite_tsx = int(tsx.pjTransaction)
        else:  # a response came, or the transaction ended: nothing of ours is left to stop
            self.invite_tsx = 0

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        if self.handle is not None:
            self.handle.on_media_state()

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        if self.handle is not None:
            self.handle.on_dtmf(prm.digit)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        if self.handle is not None:
            self.handle.on_transfer_status(int(prm.statusCode), str(prm.reason),
                                           bool(prm.finalNotify))


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """The loaded pjsua2 extension itself as a C library (the same pjsip, pjmedia and pjlib the
    wheel runs), with the prototypes of the few functions called through ctypes. Raises
    KeyError / OSError / AttributeError when the build is not the one known."""
    global _LIB
    if _LIB is None:
        import sys

        ext = sys.modules.get("pjsua2._pjsua2") or sys.modules["_pjsua2"]
        lib = ctypes.CDLL(ext.__file__)
        vp, i = ctypes.c_void_p, ctypes.c_int
        lib.pjsip_tsx_terminate.argtypes = [vp, i]
        lib.pjsip_tsx_terminate.restype = i
        lib.pjsua_call_get_count.restype = ctypes.c_uint
        lib.pjsua_get_pjmedia_endpt.restype = vp
        lib.pjmedia_endpt_get_ioqueue.argtypes = [vp]
        lib.pjmedia_endpt_get_ioqueue.restype = vp
        lib.pjmedia_endpt_stop_threads.argtypes = [vp]
        lib.pjmedia_endpt_stop_threads.restype = i
        lib.pjsua_set_no_snd_dev.restype = vp
        lib.pj_ioqueue_poll.argtypes = [vp, ctypes.POINTER(_TimeVal)]
        lib.pj_ioqueue_poll.restype = i
        lib.pjmedia_port_get_frame.argtypes = [vp, ctypes.POINTER(_MediaFrame)]
        lib.pjmedia_port_get_frame.restype = i
        _LIB = lib
    return _LIB


class _TimeVal(ctypes.Structure):
    """``pj_time_val``."""

    _fields_ = [("sec", ctypes.c_long), ("msec", ctypes.c_long)]


class _MediaFrame(ctypes.Structure):
    """``pjmedia_frame``."""

    _fields_ = [("type", ctypes.c_int), ("buf", ctypes.c_void_p), ("size", ctypes.c_size_t),
                ("timestamp", ctypes.c_uint64), ("bit_info", ctypes.c_uint32)]


def stop_invite(pjc: PjCall) -> bool:
    """End our INVITE that got no response at all, so it is not sent again (loop thread).

    pjsip keeps retransmitting an unanswered INVITE for 32 s (timer B) after a hang-up, and
    sends the CANCEL only once a provisional response arrives: a SIP peer that comes back in
    that time delivers the INVITE, and a resident's phone rings for a call the robot gave up on
    (and stored as not placed) — perhaps after she was called again. ``pjsip_tsx_terminate``
    ends the transaction now (pjsua2 has no call for it). True when it was ended."""
    tsx = pjc.invite_tsx
    if not tsx:
        return False
    pjc.invite_tsx = 0
    try:
        return bool(_lib().pjsip_tsx_terminate(ctypes.c_void_p(tsx), 408) == 0)
    except (KeyError, OSError, AttributeError, TypeError):  # another pjsua2 build: hang up as before
        return False


def pjsua_calls() -> int | None:
    """How many calls pjsua2 holds now (``pjsua_call_get_count``): also those the application
    is done with whose BYE or CANCEL pjsip still sends. None when it cannot be read."""
    try:
        return int(_lib().pjsua_call_get_count())
    except (KeyError, OSError, AttributeError, TypeError):
        return None


class FramePort(pj.AudioMediaPort):
    """Sink port: the call's audio is transmitted here and handed to the Call handle as the
    bridge delivers it (MEDIA_PTIME_MS at a time; the Call cuts it into FRAME_MS frames for
    consumers that want them)."""

    def __init__(self, handle: Call | None):
        super().__init__()
        self.handle = handle

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:  # media thread
        keep_thread_state()
        # While Python tears the port down its attributes vanish before the C++ port does.
        handle = getattr(self, "handle", None)
        if handle is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            buf = frame.buf  # keep each proxy in a variable: chained access may dangle
            handle.on_frame_received(vector_bytes(buf, frame.size))


class Player(pj.AudioMediaPlayer):
    def __init__(self, engine: Endpoint, handle: Call, play_id: int):
        super().__init__()
        self.engine = engine
        self.handle = handle
        self.play_id = play_id
        self.ended = False

    def onEof2(self) -> None:  # media thread
        keep_thread_state()
        engine = getattr(self, "engine", None)
        if engine is not None and not self.ended:
            self.ended = True
            handle, play_id = self.handle, self.play_id
            engine.post(lambda: handle.end_playback(play_id, True))


def frame_format(ptime_ms: int = defaults.FRAME_MS) -> pj.MediaFormatAudio:
    """A frame port's format: 8 kHz 16-bit mono, *ptime_ms* per frame (the bridge's)."""
    fmt = pj.MediaFormatAudio()
    fmt.type = pj.PJMEDIA_TYPE_AUDIO
    fmt.id = pj.PJMEDIA_FORMAT_PCM
    fmt.clockRate = 8000
    fmt.channelCount = 1
    fmt.bitsPerSample = 16
    fmt.frameTimeUsec = ptime_ms * 1000
    fmt.avgBps = 128000
    fmt.maxBps = 128000
    return fmt


class MediaClock:
    """The process's media clock and RTP receive on one Python thread (``start`` once the
    library runs, ``stop`` before ``libDestroy``).

    pjsua runs them on two C threads: pjmedia's media thread, which waits for RTP in its own
    ioqueue and wakes for every packet (50 a second per call) and every 10 ms when none comes,
    and the null sound device's clock, which ticks the conference bridge every
    MEDIA_PTIME_MS. Here one thread sleeps until the next tick, reads every datagram waiting
    on the media sockets into the calls' jitter buffers (``pj_ioqueue_poll`` without waiting:
    a call's three 20 ms packets of the last tick in one wake-up, just before the bridge reads
    them — the same delay as before), then runs the bridge's tick (``pjmedia_port_get_frame``
    on its master port: every port's audio read, mixed and written; RTP sent; frame ports and
    players call into Python). Wake-ups per process: 16.7 a second instead of ~150 (3 calls
    talking) to ~117 (idle). A tick that is late (the GIL, a loaded box) is caught up at once,
    up to MAX_CATCH_UP ticks; past that the clock starts again from now."""

    MAX_CATCH_UP = 10

    def __init__(self, ep: pj.Endpoint, ptime_ms: int, clock_rate: int = defaults.SAMPLE_RATE):
        lib = _lib()
        med = lib.pjsua_get_pjmedia_endpt()
        ioq = lib.pjmedia_endpt_get_ioqueue(med)
        if not med or not ioq:
            raise OSError("no media endpoint")
        self._lib = lib
        self._ep = ep
        self._ioq = ctypes.c_void_p(ioq)
        self._spf = clock_rate * ptime_ms // 1000
        self._period = ptime_ms / 1000
        lib.pjmedia_endpt_stop_threads(med)  # its media thread: we poll its ioqueue instead
        master = lib.pjsua_set_no_snd_dev()  # no sound device, no clock: we tick the bridge
        if not master:
            raise RuntimeError("pjsua_set_no_snd_dev gave no conference bridge")
        self._master = ctypes.c_void_p(master)
        self._stop = False
        self.media = False
        """Whether a call (so a media socket) may be there: the media ioqueue is polled only
        then (the loop thread sets it; a poll without sockets sleeps in pjlib, ~20 µs CPU)."""
        self.ticks = 0
        self.late = 0
        """Ticks run late (caught up), and times the clock started again from now."""
        self.resyncs = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="media-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._thread = None

    def _run(self) -> None:
        import logging
        import time

        self._ep.libRegisterThread("media-clock")
        name_thread("media-clock")
        lib = self._lib
        poll, get = lib.pj_ioqueue_poll, lib.pjmedia_port_get_frame
        ioq, master = self._ioq, self._master
        now_tv = ctypes.byref(_TimeVal(0, 0))
        nbytes = self._spf * 2
        buf = ctypes.create_string_buffer(nbytes)
        frame = _MediaFrame()
        fr = ctypes.byref(frame)
        addr, audio, spf = ctypes.addressof(buf), int(pj.PJMEDIA_FRAME_TYPE_AUDIO), self._spf
        period, sleep, clock = self._period, time.sleep, time.monotonic
        late_max = period * self.MAX_CATCH_UP
        ts = 0
        due = clock()
        try:
            while not self._stop:
                now = clock()
                if now < due:
                    sleep(due - now)
                elif now - due > late_max:
                    self.resyncs += 1
                    due = now
                elif now - due > period:
                    self.late += 1
                if self.media:  # at most 16 sockets a poll; each read drains its socket
                    for _ in range(8):
                        if poll(ioq, now_tv) < 16:
                            break
                frame.type, frame.buf, frame.size = audio, addr, nbytes
                frame.timestamp, frame.bit_info = ts, 0
                get(master, fr)
                ts += spf
                self.ticks += 1
                due += period
        except BaseException:  # noqa: BLE001 - logged; the calls go silent, the loop goes on
            logging.getLogger("callbot.telephony").exception("media clock stopped")
        logging.getLogger("callbot.telephony").info(
            "media clock: %d ticks, %d late, started again %d times", self.ticks, self.late,
            self.resyncs)
