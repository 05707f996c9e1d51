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


def stop_invite(pjc: PjCall) -> bool:
    """End our INVITE that got no response at all, so it is not sent again (loop thread).

    pjsip keeps retransmitting an unanswered INVITE for 32 s (timer B) after a hang-up, and
    sends the CANCEL only once a provisional response arrives: a SIP peer that comes back in
    that time delivers the INVITE, and a resident's phone rings for a call the robot gave up on
    (and stored as not placed) — perhaps after she was called again. ``pjsip_tsx_terminate``
    ends the transaction now (pjsua2 has no call for it). True when it was ended."""
    global _LIB
    tsx = pjc.invite_tsx
    if not tsx:
        return False
    pjc.invite_tsx = 0
    try:
        if _LIB is None:
            import sys

            ext = sys.modules.get("pjsua2._pjsua2") or sys.modules["_pjsua2"]
            lib = ctypes.CDLL(ext.__file__)  # the loaded extension itself: the same pjsip
            lib.pjsip_tsx_terminate.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.pjsip_tsx_terminate.restype = ctypes.c_int
            _LIB = lib
        return bool(_LIB.pjsip_tsx_terminate(ctypes.c_void_p(tsx), 408) == 0)
    except (KeyError, OSError, AttributeError, TypeError):  # another pjsua2 build: hang up as before
        return False


def pjsua_calls() -> int | None:
    """How many calls pjsua2 holds now (``pjsua_call_get_count``): also those the application
    is done with whose BYE or CANCEL pjsip still sends. None when it cannot be read."""
    global _LIB
    try:
        if _LIB is None:
            import sys

            ext = sys.modules.get("pjsua2._pjsua2") or sys.modules["_pjsua2"]
            lib = ctypes.CDLL(ext.__file__)
            lib.pjsip_tsx_terminate.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.pjsip_tsx_terminate.restype = ctypes.c_int
            _LIB = lib
        _LIB.pjsua_call_get_count.restype = ctypes.c_uint
        return int(_LIB.pjsua_call_get_count())
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
