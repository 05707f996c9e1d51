"""One call: a handle safe to use from any thread, which owns its state.

Public methods (any thread) post closures to the endpoint's loop thread; the methods under
"loop thread" run there (called by :class:`~callbot.telephony.endpoint.Endpoint` and by this call's
own closures); ``on_frame_received`` runs on pjmedia's clock thread and only copies and posts.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from callbot import defaults
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

if TYPE_CHECKING:
    from callbot.telephony.endpoint import Endpoint

EARLY_MEDIA_MAX_S = 60.0
"""Early media kept per call before the answer, seconds (8 kHz PCM, 16 KB/s)."""
CANCEL_GRACE_S = 3.0
"""After we CANCEL or BYE, how long we wait for the peer before we close the call ourselves."""
RECORDING_WAIT_S = 2.0
"""Longest we hold back Disconnected until a call's recording WAV is complete, seconds."""

TRANSPORT_ERR = re.compile(r"PJ_E|PJSIP_E|transport|resolve|gethostbyname|connection refused",
                           re.IGNORECASE)
"""A reason text that means the network, not the callee, failed."""
_ids = itertools.count(1)
_FRAME = defaults.FRAME_BYTES


def _now() -> datetime:
    return datetime.now(UTC)


def wav_finished(path: str | None) -> bool:
    """pjmedia leaves the RIFF size 0 until it closes the file."""
    try:
        with open(path or "", "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return len(head) == 8 and int.from_bytes(head[4:8], "little") > 0


class Call:
    """Handle of one call, safe to use from any thread. Events arrive on ``events``."""

    def __init__(self, endpoint: Endpoint, number: str, uri: str, direction: str,
                 ring_timeout: float, max_call_s: float,
                 on_frame: Callable[[bytes], None] | None = None, early_frames: bool = False,
                 chunks: bool = False):
        self.id = next(_ids)
        self.number = number
        self.uri = uri
        self.direction = direction
        """'out' for calls we dial, 'in' for calls we receive (the resident simulator)."""
        self.remote_uri = ""
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        """The call's events (C-level queue: a put from the media thread costs a lock release,
        not a Python Condition)."""
        self.frames_received = 0
        self._ep = endpoint
        self._on_frame_cb = on_frame
        self._early_frames = early_frames
        self._chunks = chunks
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
        self._ep.post(lambda: self.start_play(str(p), play_id))
        return play_id

    def stop_playback(self) -> None:
        """Stop the current prompt now (barge-in)."""
        self._ep.post(self.stop_play)

    def hangup(self) -> None:
        """Hang up (CANCEL before the answer, BYE after). Idempotent."""
        self._ep.post(lambda: self.hangup_now("hangup by robot"))

    def send_dtmf(self, digits: str) -> None:
        """Press keys (RFC 2833)."""
        if not re.fullmatch(r"[0-9*#A-Da-d]+", digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        self._ep.post(lambda: self._dial_dtmf(digits))

    def record(self, wav_path: str | os.PathLike[str], ours: bool = False) -> None:
        """Record what the other side sends into a WAV file (complete when Disconnected
        arrives); ``ours=True`` mixes in what we play, for a whole-call recording."""
        self._record_ours = ours
        if not Path(wav_path).parent.is_dir():
            raise FileNotFoundError(f"录音目录不存在 (no such directory): {Path(wav_path).parent}")
        self._ep.post(lambda: self._start_recording(str(wav_path)))

    def bridge(self, other: Call) -> bool:
        """Join this call and *other* on the conference bridge, both ways (转人工): each hears the
        other; what either was playing stops. False when either has no audio (ended). Both stay
        joined until one ends; the caller hangs up the other."""
        return bool(self._ep.run(lambda: self._bridge_now(other)))

    def extend(self, max_call_s: float) -> None:
        """Let an answered call last up to *max_call_s* from its answer (a bridged conversation
        outlives a robot call's ``max_call_length``)."""
        self._max_call_s = max_call_s

    def refer(self, target: str) -> None:
        """Ask the other side to call *target* (a number through the dial pattern, or a SIP URI)
        instead (SIP REFER, blind transfer); ``TransferStatus`` events follow."""
        uri = to_sip_uri(target, self._ep.conf)
        self._ep.post(lambda: self._refer_now(uri))

    def ring(self, code: int = 180) -> None:
        """Incoming calls: send a provisional response (180 ringing, 183 with early media)."""
        self._ep.post(lambda: self._answer_now(code))

    def answer(self, code: int = 200) -> None:
        """Incoming calls: answer."""
        self._ep.post(lambda: self._answer_now(code))

    def reject(self, code: int = 486) -> None:
        """Incoming calls: refuse with a final status (486 busy, 603 decline, 404, 480...)."""
        self._ep.post(lambda: self.hangup_now(f"rejected {code}", code))

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
    def settled(self) -> bool:
        """Answered and going on, no hang-up under way: none of its timers is due within a
        second (loop thread)."""
        return self._answered and self._hangup_at is None and not self.done

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
    def on_frame_received(self, pcm: bytes) -> None:
        """The other side's audio as the bridge hands it over: a whole number of 20 ms frames
        (MEDIA_PTIME_MS at a time; pjmedia's clock thread: copy and post only). With ``chunks``
        it goes on as one Frame (one hand-off to the consumer's thread per chunk), else as one
        Frame (or ``on_frame`` call) per 20 ms."""
        n = len(pcm) // _FRAME
        if n == 0:
            return
        self.frames_received += n
        early = not self._answered
        if early:
            with self._early_lock:
                if len(self._early) < EARLY_MEDIA_MAX_S * defaults.SAMPLE_RATE * 2:
                    self._early += pcm
            if not self._early_frames:
                return
        if self._chunks and self._on_frame_cb is None:
            self.events.put(Frame(pcm, early=early))
            return
        for i in range(0, n * _FRAME, _FRAME):
            piece = pcm[i:i + _FRAME] if n > 1 else pcm
            if self._on_frame_cb is not None:
                self._on_frame_cb(piece)
            else:
                self.events.put(Frame(piece, early=early))

    # --- loop thread: placing, answering, ending ---
    def place(self, acc: Any) -> None:
        """Send the INVITE (an outgoing call)."""
        pj = self._ep.pj
        pjc = self._pj = self._ep.m.PjCall(self._ep, acc, self)
        self._t0 = time.monotonic()
        self._started_at = _now()
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        try:
            pjc.makeCall(self.uri, prm)
        except pj.Error as exc:
            reason = f"{exc.reason} ({exc.title})" if exc.title else exc.reason
            self.finish(None, reason or "makeCall failed",
                        outcome_override="unreachable" if TRANSPORT_ERR.search(
                            reason or "") else "failed")

    def adopt(self, acc: Any, call_id: int) -> None:
        """Take over an incoming call pjsua2 announced (``onIncomingCall``)."""
        pjc = self._pj = self._ep.m.PjCall(self._ep, acc, self, call_id)
        self._any_response = True
        ci = pjc.getInfo()
        self.uri = ci.localUri
        self.remote_uri = ci.remoteUri
        m = re.search(r"sips?:([^@>;]+)@", ci.localUri)
        self.number = m.group(1) if m else ci.localUri

    def hangup_now(self, reason: str, code: int = 0) -> None:
        """CANCEL / BYE, or refuse an incoming call with *code*."""
        if self.done or self._pj is None:
            return
        if self._hangup_at is None:
            self._robot_hangup = True
            self._robot_reason = reason
            self._hangup_at = time.monotonic()
        pj = self._ep.pj
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        try:
            self._pj.hangup(prm)
        except pj.Error as exc:
            self._ep.log.debug("hangup: %s", exc.reason)

    def _answer_now(self, code: int) -> None:
        if self.done or self._pj is None:
            return
        prm = self._ep.pj.CallOpParam()
        prm.statusCode = code
        self._pj.answer(prm)

    def _bridge_now(self, other: Call) -> bool:
        if self.done or other.done or self._pj is None or other._pj is None:
            return False
        self.stop_play()
        other.stop_play()
        aa, ab = self.audio(), other.audio()
        if aa is None or ab is None:
            return False
        aa.startTransmit(ab)
        ab.startTransmit(aa)
        if self._recorder is not None and self._record_ours:  # a whole-call recording keeps both
            ab.startTransmit(self._recorder)
        return True

    def _refer_now(self, uri: str) -> None:
        if self.done or self._pj is None:
            return
        pj = self._ep.pj
        try:
            self._pj.xfer(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            self.events.put(TransferStatus(500, f"REFER failed: {exc.reason}", True))

    def _dial_dtmf(self, digits: str) -> None:
        if self.done or self._pj is None:
            return
        self._pj.dialDtmf(digits)

    # --- loop thread: media ---
    def audio(self) -> Any:
        """This call's active audio media (None before media is up or after the end)."""
        if self._pj is None:
            return None
        pj = self._ep.pj
        ci = self._pj.getInfo()  # keep the struct in a variable: .media of a temporary dangles
        media = ci.media
        for i in range(len(media)):
            mi = media[i]
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status in (
                    pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                try:
                    return self._pj.getAudioMedia(i)
                except pj.Error:
                    return None
        return None

    def _start_recording(self, path: str) -> None:
        if self.done:
            return
        rec = self._ep.pj.AudioMediaRecorder()
        rec.createRecorder(path)
        self._recorder, self._record_path = rec, path
        aud = self.audio()
        if aud is not None:
            aud.startTransmit(rec)
        if self._player is not None and self._record_ours:
            self._player.startTransmit(rec)

    def start_play(self, path: str, play_id: int) -> None:
        """Play *path* now, or as soon as media is up."""
        if self.done or self._pj is None:
            self.events.put(PlaybackEnded(play_id, False))
            return
        self.stop_play()
        aud = self.audio()
        if aud is None:
            if self._pending_play is not None:
                self.events.put(PlaybackEnded(self._pending_play[1], False))
            self._pending_play = (path, play_id)
            return
        self._start_player(aud, path, play_id)

    def _start_player(self, aud: Any, path: str, play_id: int) -> None:
        ep = self._ep
        player = ep.m.Player(ep, self, play_id)
        try:
            player.createPlayer(path, ep.pj.PJMEDIA_FILE_NO_LOOP)
        except ep.pj.Error as exc:
            ep.log.error("cannot play %s: %s", path, exc.reason)
            self.events.put(PlaybackEnded(play_id, False))
            return
        player.startTransmit(aud)
        if self._recorder is not None and self._record_ours:
            player.startTransmit(self._recorder)
        self._player = player

    def stop_play(self) -> None:
        """Stop what is playing (or about to play): PlaybackEnded(completed=False)."""
        if self._pending_play is not None:
            self.events.put(PlaybackEnded(self._pending_play[1], False))
            self._pending_play = None
        if self._player is not None:
            self.end_playback(self._player.play_id, False)

    def end_playback(self, play_id: int, completed: bool) -> None:
        """The player *play_id* ended (its end of file, or stopped)."""
        player = self._player
        if player is None or player.play_id != play_id:
            return
        player.ended = True
        self._player = None
        aud = self.audio()
        for sink in (aud, self._recorder):
            if sink is not None:
                try:
                    player.stopTransmit(sink)
                except self._ep.pj.Error:
                    pass
        self._ep.graveyard.add(player)
        self.events.put(PlaybackEnded(play_id, completed))

    def on_media_state(self) -> None:
        """Media came up (or changed): connect the frame port, recorder and player."""
        if self.done:
            return
        aud = self.audio()
        if aud is None:
            return
        if self._port is None:
            self._port = self._ep.ports.take(self)
        aud.startTransmit(self._port)
        if self._recorder is not None:
            aud.startTransmit(self._recorder)
        if self._player is not None:
            self._player.startTransmit(aud)
            if self._recorder is not None and self._record_ours:
                self._player.startTransmit(self._recorder)
        if self._pending_play is not None:
            path, play_id = self._pending_play
            self._pending_play = None
            self._start_player(aud, path, play_id)

    # --- loop thread: signalling ---
    def on_call_state(self, st: int, code: int, reason: str) -> None:
        pj = self._ep.pj
        if self.direction == "out" and st == pj.PJSIP_INV_STATE_EARLY and code >= 100:
            self._any_response = True
            if code in (180, 183) and code != self._last_prov:
                self._last_prov = code
                self._ringing = True
                self.events.put(Ringing(code, early_media=code == 183))
        elif st == pj.PJSIP_INV_STATE_CONFIRMED and not self._answered:
            self._any_response = True
            self._t_answer = time.monotonic()
            self._answered_at = _now()
            self._answered = True
            self.events.put(Answered())
        elif st == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.finish(code, reason)

    def on_dtmf(self, digit: str) -> None:
        if self.done:
            return
        self._dtmf.append(digit)
        self.events.put(Dtmf(digit))

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        if self.done:
            return
        self.events.put(TransferStatus(code, reason, final))

    def tick(self, now: float) -> None:
        """Timers: ring timeout, no response, max call length, an unanswered CANCEL/BYE."""
        if self.done:
            return
        if self._hangup_at is not None:
            if now - self._hangup_at > CANCEL_GRACE_S:
                if self._ring_timeout_hit and not self._answered:
                    self.finish(487, "Request Terminated (ring timeout; no reply to CANCEL)",
                                zombie=True)
                else:
                    self.finish(200 if self._answered else None,
                                self._robot_reason or "no reply to BYE/CANCEL", zombie=True)
            return
        if self.direction != "out":
            if self._answered and self._t_answer and now - self._t_answer > self._max_call_s:
                self.hangup_now("max call length")
            return
        if not self._answered:
            waited = now - self._t0
            if not self._any_response and waited >= min(self._ep.conf.response_timeout_s,
                                                         self._ring_timeout):
                self._no_response = True
                # the INVITE must not go out again (a peer back later would ring the phone);
                # ending its transaction disconnects the call here, at once
                if not self._ep.m.stop_invite(self._pj):
                    self.hangup_now("no response")
                self.finish(None, f"no response within {waited:.0f} s (no ringing or answer "
                            "from that address)", outcome_override="unreachable", zombie=True)
            elif waited >= self._ring_timeout:
                self._ring_timeout_hit = True
                self.hangup_now("ring timeout")
        elif self._t_answer is not None and now - self._t_answer > self._max_call_s:
            self.hangup_now("max call length")

    def _outcome(self, code: int | None, reason: str, end: float,
                 outcome_override: str | None) -> tuple[str, int | None, str]:
        if self._no_response:
            outcome_override, code = "unreachable", None
            reason = (f"no response within {end - self._t0:.0f} s (no ringing or answer from "
                      "that address)")
        if outcome_override:
            return outcome_override, code, reason
        outcome = classify(code, answered=self._answered, ring_timeout=self._ring_timeout_hit,
                           ringing=self._ringing, transport_error=bool(TRANSPORT_ERR.search(
                               reason or "")) and not self._answered)
        if (not self._answered and self._robot_hangup and not self._ring_timeout_hit
                and self.direction == "out" and code == 487):
            outcome, reason = "failed", f"cancelled by robot ({self._robot_reason})"
        return outcome, code, reason

    def finish(self, code: int | None, reason: str, *, outcome_override: str | None = None,
               zombie: bool = False) -> None:
        """The call is over: its result, its pjsua2 objects released (Disconnected follows once
        a recording is complete). *zombie*: we gave up waiting for the peer; the pjsua2 call
        lives on without this handle until pjsua2 disconnects it."""
        if self.done or self._result is not None:
            return
        end = time.monotonic()
        if self._pending_play is not None or self._player is not None:
            self.stop_play()
        outcome, code, reason = self._outcome(code, reason, end, outcome_override)
        if self._answered:
            hangup_by = "robot" if self._robot_hangup else "callee"
            if self._robot_hangup and self._robot_reason:
                reason = self._robot_reason
            sip_code: int | None = 200
        else:
            hangup_by = None
            sip_code = code or None
        ring_end = self._t_answer if self._t_answer is not None else end
        self._result = CallResult(
            number=self.number, uri=self.uri, outcome=outcome, sip_code=sip_code,
            reason=reason or "", hangup_by=hangup_by, ring_s=round(ring_end - self._t0, 2),
            talk_s=round(end - self._t_answer, 2) if self._t_answer is not None else 0.0,
            dtmf="".join(self._dtmf), started_at=self._started_at, answered_at=self._answered_at,
            ended_at=_now(),
            extra={"frames": self.frames_received, "recording": self._record_path,
                   "direction": self.direction},
        )
        pjc = self._pj
        if zombie and pjc is not None:
            self._ep.keep_zombie(pjc)
            self._pj = None
        self.release()
        self._ep.forget(self)
        if self._record_path:
            # pjmedia writes the WAV header when the dropped recorder is destroyed (10-30 ms
            # later): Disconnected waits for it so consumers can read the file at once.
            self._ep.finalize_later(self, time.monotonic() + RECORDING_WAIT_S)
        else:
            self.announce_end()

    def recording_finished(self) -> bool:
        return wav_finished(self._record_path)

    def announce_end(self) -> None:
        """Mark the call done and put Disconnected on its events (the last event)."""
        self._done.set()
        assert self._result is not None
        self.events.put(Disconnected(self._result))

    def release(self) -> None:
        """Drop every pjsua2 object of this call (loop thread, outside its callbacks)."""
        ep = self._ep
        if self._port is not None:
            self._port.handle = None
            aud = self.audio() if self._pj is not None else None
            if aud is not None:  # a call we gave up on may still send early media
                try:
                    aud.stopTransmit(self._port)
                except ep.pj.Error:
                    pass
        if self._player is not None:
            try:
                self._player.ended = True
            except Exception:  # noqa: BLE001
                pass
        ep.graveyard.add(self._player, self._recorder, self._port)
        self._player = None
        self._recorder = None
        self._port = None
        if self._pj is not None:
            ep.graveyard.add(self._pj)
            self._pj.handle = None
        self._pj = None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.direction} {self.number} done={self.done}>"
