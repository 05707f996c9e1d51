"""Phone: this process's SIP line — one pjsua2 Endpoint driven by one loop thread.

The pieces: :mod:`~callbot.telephony.endpoint` (the Endpoint's lifecycle and loop),
:mod:`~callbot.telephony.call` (one call, which owns its state), :mod:`~callbot.telephony.ports`
(frame ports and what a call leaves behind). Only the loop thread touches pjsua2; other threads
post closures to it and read events from ``Call.events``.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
from collections.abc import Callable

from callbot.config import SipConfig
from callbot.exceptions import TelephonyError
from callbot.telephony.call import Call
from callbot.telephony.dialplan import to_sip_uri
from callbot.telephony.endpoint import Endpoint

__all__ = ["Call", "Phone"]

_active_phone: Phone | None = None
_active_lock = threading.Lock()


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
        self._engine: Endpoint | None = None

    @property
    def local_port(self) -> int:
        """The SIP port we actually listen on (useful with ``local_port = 0``)."""
        if self._engine is None:
            raise TelephonyError("Phone not started")
        return self._engine.local_port

    @property
    def lingering_calls(self) -> int:
        """Calls pjsua2 still holds that are over for this process (a BYE to a caller that
        died is sent again and again): each still takes one of PJSUA_MAX_CALLS, so an INVITE
        that comes meanwhile is refused before the application sees it."""
        e = self._engine
        if e is None:
            return 0
        from callbot.telephony import _pj

        held = _pj.pjsua_calls()
        if held is None:
            return len(e.zombies)
        return max(0, held - sum(1 for x in list(e.calls.values()) if not x.done))

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
            engine = Endpoint(self, _pj)
            engine.start()
        except BaseException:
            with _active_lock:
                _active_phone = None
            raise
        self._engine = engine
        atexit.register(self.stop)

    def dial(self, number: str, ring_timeout: float | None = None, max_call_s: float | None = None,
             on_frame: Callable[[bytes], None] | None = None, early_frames: bool = False,
             chunks: bool = False) -> Call:
        """Place a call (returns at once). NUMBER is a phone number (through the dial pattern) or
        a SIP URI. ``on_frame`` (called on the media thread with 320-byte PCM frames) replaces the
        Frame events when given. ``early_frames`` also delivers the early media (183) as it
        arrives, as ``Frame(pcm, early=True)`` (or to ``on_frame``), e.g. to recognise carrier
        announcements while ringing; ``early_media()`` keeps it either way. ``chunks``: each
        Frame event carries the conference bridge's whole chunk (MEDIA_PTIME_MS, 3 frames) —
        one hand-off to the consumer's thread per chunk instead of one per 20 ms."""
        if self._engine is None:
            raise TelephonyError("Phone.start() first")
        uri = to_sip_uri(number, self.config)
        engine = self._engine
        call = Call(engine, number, uri, "out",
                    ring_timeout if ring_timeout is not None else self.config.ring_timeout_s,
                    max_call_s if max_call_s is not None else self.config.max_call_s, on_frame,
                    early_frames=early_frames, chunks=chunks)
        engine.run(lambda: engine.do_dial(call))
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
