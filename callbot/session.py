"""One scripted call: telephony, speech and the dialogue engine joined.

``run_call`` renders every prompt before dialling (so the greeting starts the moment the callee
answers), dials, plays the engine's prompts, streams the callee's audio into the recogniser for
each question, turns keys into ``Digit`` events, stops a prompt when the callee talks over it
(barge-in; a prompt that forbids barge-in plays to its end, and keys pressed over it wait for
that end), stores each answer the moment it is heard (``on_record``) and the end of the dialogue
the moment it is reached (``on_end``, before the goodbye plays), says goodbye and hangs up.
Each spoken reply, with its audio, goes to ``on_reply`` before the answers it produced; with
``record_to`` the whole call (both sides, mixed) is recorded to a WAV.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import time
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from callbot import announcements as announce
from callbot import defaults
from callbot.dialogue import (
    Alert,
    BargeIn,
    DialogueEngine,
    Digit,
    HangUp,
    Heard,
    HungUp,
    Listen,
    Record,
    Say,
    Silence,
    Transfer,
)
from callbot.exceptions import SpeechError
from callbot.prompts import Prompts, Tts, prompt_key
from callbot.script import Script, load_script
from callbot.speech.stream import AsrEngine
from callbot.transfer import TransferLeg, TransferPlan

log = logging.getLogger("callbot.session")

FRAME_S = defaults.FRAME_MS / 1000
_FRAME_BYTES = defaults.FRAME_BYTES
_GUARD_S = 3.0  # extra wall time before we stop trusting the media clock (no frames arriving)


class Dialler(Protocol):
    """What a call needs of the telephony side: a started ``callbot.telephony.Phone``."""

    def dial(self, number: str, *, ring_timeout: float | None = None,
             max_call_s: float | None = None, early_frames: bool = False,
             chunks: bool = False) -> Any:
        """Place a call to *number* (returns at once); the ``telephony.Call``. ``chunks``: its
        Frame events may carry several 20 ms frames each (the bridge's chunk)."""
        ...


OnRecord = Callable[[str, Any], None]
OnEnd = Callable[[str], None]
"""Called with the end reason the moment the dialogue ends (before the goodbye plays)."""
OnHeard = Callable[[list[Record], list[Alert]], None]
"""Called with the Records and Alerts of one reply, together (one transaction for the store)."""


@dataclass(frozen=True)
class Reply:
    """One spoken reply as the call heard it, handed to ``on_reply`` before the answers it
    produced are recorded (so stored answers can point at it)."""

    step: str
    """The question it answered."""
    text: str
    confidence: float
    start_s: float
    """Where ``audio`` begins, seconds from the answer (the whole-call recording's time base)."""
    end_s: float
    """End of speech, seconds from the answer."""
    audio: bytes = field(repr=False)
    """8 kHz 16-bit mono PCM, detected start (preroll included) to end of speech."""
    pinyin: str = ""
    intent: str | None = None
    value: Any = None
    urgent: bool = False
    fields: tuple[str, ...] = ()
    """The answer fields this reply recorded (the ``on_record`` calls that follow it)."""
    line: int | None = None
    """Index of the reply's line in the call's transcript."""

    @property
    def duration_s(self) -> float:
        return len(self.audio) / 2 / defaults.SAMPLE_RATE


OnReply = Callable[[Reply], None]


@dataclass
class CallReport:
    """The call as telephony saw it (``result``) plus what the dialogue got from it."""

    result: Any
    """callbot.telephony.CallResult: outcome, sip_code, hangup_by, ring_s, talk_s, dtmf…"""
    answers: dict[str, Any] = field(default_factory=dict)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    ended: str | None = None
    """How the dialogue ended (completed, no_input, hung_up…); None when never answered."""
    recording: Path | None = None
    """The whole-call WAV (both sides) when ``record_to`` was given and the call was answered."""
    alerts: list[Alert] = field(default_factory=list)
    """Alerts the dialogue raised (needs help, a person asked for)."""
    transfer: dict[str, Any] | None = None
    """转人工, when the dialogue asked for it: ``to``, ``method``, ``answered``, ``ring_s``,
    ``talk_s``, ``reason`` (why it failed)."""
    timings: dict[str, list[float]] = field(default_factory=dict)
    """Latencies in seconds: ``answer_to_greeting`` (answer → greeting playback started),
    ``reply_to_prompt`` (end of the callee's speech → next prompt started), ``endpoint_to_prompt``
    (reply judged ended → next prompt started), and the parts of the latter: ``decode_wait``
    (reply judged ended → its text back from the recogniser), ``reply_store`` (``on_reply``),
    ``answers_store`` (``on_heard`` / ``on_record`` of a reply's answers)."""
    frames: int = 0
    """20 ms frames of the callee's audio received after the answer (``talk_s`` × 50 when
    none was lost)."""
    assistant_message: str | None = None
    """The template's ``assistant:`` message, when a voice assistant answered and it was left
    (the outcome stays ``assistant``)."""

    @property
    def outcome(self) -> str:
        return str(self.result.outcome)

    def to_json(self) -> dict[str, Any]:
        """The telephony JSON plus ``answers``, ``transcript`` and ``ended``."""
        out = dict(self.result.to_json())
        out.update(answers=self.answers, transcript=self.transcript, ended=self.ended,
                   assistant_message=self.assistant_message)
        return out


class _LiveCall:
    """One call in progress: plays the engine's prompts, feeds it what is heard, stores answers."""

    def __init__(self, call: Any, engine: DialogueEngine, prompts: Prompts, asr: AsrEngine,
                 on_record: OnRecord | None, trailing_silence_s: float | None,
                 clock: Callable[[], float], on_end: OnEnd | None = None,
                 on_reply: OnReply | None = None, on_heard: OnHeard | None = None,
                 phone: Dialler | None = None, transfer: TransferPlan | None = None):
        self.call = call
        self.phone = phone
        self.transfer = transfer
        self.leg: TransferLeg | None = None
        self.transfer_wanted = False
        self.on_end = on_end
        self.on_reply = on_reply
        self.on_heard = on_heard
        self.frames = 0  # frames heard since the answer: the call's (and recording's) clock
        self.stream_first = 0  # self.frames when the current stream got its first frame
        self.engine = engine
        self.prompts = prompts
        self.asr = asr
        self.on_record = on_record
        self.trailing_silence_s = trailing_silence_s
        self.clock = clock
        self.play_id: int | None = None
        self.play_started = 0.0
        self.play_len = 0.0
        self.barge_from: float | None = None  # seconds into the playing batch from which barge-in is allowed
        self.held_keys: list[str] = []  # keys pressed while the prompt may not be interrupted
        self.listen: Listen | None = None
        self.stream: Any = None
        self.stream_frames = 0
        self.hangup_reason: str | None = None
        self.hangup_sent = False
        self.last_frame = clock()
        self.pending_reply_end: tuple[float, float] | None = None  # (end of speech, endpoint) walls
        self.timings: dict[str, list[float]] = {
            "answer_to_greeting": [], "reply_to_prompt": [], "endpoint_to_prompt": [],
            "speech_errors": [], "decode_wait": [], "reply_store": [], "answers_store": []}
        self.error: BaseException | None = None
        self.message: str | None = None
        """The ``assistant:`` message left on a voice assistant, when one was."""
        self._storing = False  # storing a spoken reply's answers (timings)
        self.judge: Callable[[Any, float], Any] | None = None
        """The announcement listener's ``judge(final, start_s)`` when it shares this call's
        recogniser: each reply of the first seconds is read for an announcement first."""

    # -- actions --
    def apply(self, actions: list[Any], reply: tuple[Any, str] | None = None) -> None:
        """Carry out the dialogue's *actions*. With *reply* (the Final heard and its question),
        that reply goes to ``on_reply`` before its answers are stored; when the actions only ask
        the next question (no hang-up, 转人工 or alert), the question starts first and the reply
        and its answers are stored right after it started (a few ms, while it plays): at a
        burst the database's write lock, shared by every line process of the host, is then no
        part of the reply → prompt wait."""
        says: list[Say] = []
        heard: list[Record | Alert] = []
        ask_first = reply is not None and self.error is None and any(
            isinstance(a, Say) for a in actions) and not any(
            isinstance(a, HangUp | Transfer | Alert) for a in actions)
        if reply is not None and not ask_first:
            self._reply(reply[0], reply[1], actions)
        for act in actions:
            if isinstance(act, Say):
                says.append(act)
            elif isinstance(act, Record | Alert):
                heard.append(act)
            elif isinstance(act, Transfer):
                self.transfer_wanted = True
            elif isinstance(act, Listen):
                self.listen = act
                self.stream = None
                self.stream_frames = 0
            elif isinstance(act, HangUp):
                self._store(heard)
                self.hangup_reason = act.reason
                self.listen = None
                self.stream = None
                self._ended(act.reason)
        if ask_first:
            assert reply is not None
            self._play(says)
            says = []
            self._reply(reply[0], reply[1], actions)
        self._store(heard)
        if self.error is not None:
            self._hangup_now()
            return
        if says:
            self._play(says)
        if self.transfer_wanted and self.play_id is None:
            self._start_transfer()
        elif self.hangup_reason is not None and self.play_id is None:
            self._hangup_now()

    # -- 转人工 --
    def _held(self) -> bool:
        """The call is bridged to the duty phone: it ends when one of them hangs up."""
        return self.leg is not None and self.leg.bridged

    def _start_transfer(self) -> None:
        self.transfer_wanted = False
        self.leg = TransferLeg(self.phone, self.call, self.transfer or TransferPlan(None),
                               self.clock)
        result = self.leg.start()
        if result is not None:
            self.apply(self.engine.on(result))

    def poll_transfer(self) -> None:
        if self.leg is not None and self.leg.active:
            result = self.leg.poll()
            if result is not None:
                self.apply(self.engine.on(result))

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        if self.leg is not None:
            result = self.leg.on_status(code, reason, final)
            if result is not None:
                self.apply(self.engine.on(result))

    def _store(self, heard: list[Record | Alert]) -> None:
        """Hand the answers (and alerts) of one reply over together: ``on_heard`` stores them in
        one transaction; without it each Record goes to ``on_record``."""
        if not heard or self.error is not None:
            heard.clear()
            return
        batch = list(heard)
        heard.clear()
        t0 = self.clock()
        try:
            if self.on_heard is not None:
                self.on_heard([a for a in batch if isinstance(a, Record)],
                              [a for a in batch if isinstance(a, Alert)])
            elif self.on_record is not None:
                for act in batch:
                    if isinstance(act, Record):
                        self.on_record(act.field, act.value)
        except BaseException as exc:  # store failed: end the call, then re-raise
            self.error = exc
            self.hangup_reason = "error"
        if self._storing:
            self.timings["answers_store"].append(round(self.clock() - t0, 4))

    def _ended(self, reason: str) -> None:
        """Store the end of the dialogue now: a crash while the goodbye plays re-dials no one."""
        if self.on_end is None or self.error is not None:
            return
        try:
            self.on_end(reason)
        except BaseException as exc:  # store failed: end the call, then re-raise
            self.error = exc
            self.hangup_reason = "error"

    def _play(self, says: list[Say]) -> None:
        texts = tuple(prompt_key(s) for s in says)
        path, length = self.prompts.batch(texts)
        # barge-in is allowed from the start of the trailing run of interruptible prompts
        offset, barge_from = 0.0, None
        for say in says:
            if say.barge_in_allowed:
                if barge_from is None:
                    barge_from = offset
            else:
                barge_from = None
            offset += self.prompts.duration(prompt_key(say))
        self.play_id = self.call.play(path)
        _turns().end(self)  # the reply → prompt path is over: the audio thread may work
        now = self.clock()
        self.play_started, self.play_len, self.barge_from = now, length, barge_from
        if self.pending_reply_end is not None:
            end_speech, endpoint = self.pending_reply_end
            self.timings["reply_to_prompt"].append(round(now - end_speech, 4))
            self.timings["endpoint_to_prompt"].append(round(now - endpoint, 4))
            self.pending_reply_end = None

    def _stop_playback(self) -> None:
        if self.play_id is not None:
            self.call.stop_playback()
            self.play_id = None

    def _hangup_now(self) -> None:
        if self._held():
            return  # bridged: the resident and the duty phone talk until one hangs up
        if not self.hangup_sent:
            self.hangup_sent = True
            self.call.hangup()

    # -- events --
    def on_answered(self) -> None:
        t = self.clock()
        self.last_frame = t
        self.apply(self.engine.start())
        if self.play_id is not None:
            self.timings["answer_to_greeting"].append(round(self.play_started - t, 4))

    def _locked(self, now: float) -> bool:
        """A prompt is playing and this part of it may not be interrupted (``barge_in: false``):
        neither speech nor keys cut it."""
        return self.play_id is not None and (
            self.barge_from is None or now - self.play_started < self.barge_from)

    def _flush_keys(self) -> None:
        keys, self.held_keys = self.held_keys, []
        for digit in keys:
            self.on_dtmf(digit)

    def on_frame(self, pcm: bytes) -> bool:
        """One frame of the callee's audio; whether the dialogue's stream decoded it."""
        now = self.clock()
        self.last_frame = now
        self.frames += 1
        if self.held_keys and not self._locked(now):
            self._flush_keys()  # may start the next prompt: ask again below
        if self.listen is None or self.engine.ended is not None:
            return False
        if self._locked(now):
            return False  # this part of the prompt may not be interrupted: do not listen yet
        if self.stream is None:
            remaining = max(0.0, self.play_len - (now - self.play_started)) \
                if self.play_id is not None else 0.0
            kw: dict[str, Any] = {"no_input_s": remaining + self.listen.timeout_s}
            silence = getattr(self.listen, "end_silence_s", None) or self.trailing_silence_s
            if silence is not None:
                kw["trailing_silence_s"] = silence
            if getattr(self.asr, "classifies", False) is True:
                kw["intents"] = list(self.listen.intents)  # the speech process classifies it
            self.stream = self.asr.stream(list(self.listen.expect), **kw)
            self.stream_frames = 0
            self.stream_first = self.frames
        self.stream_frames += 1
        events = self._heard(self.stream.accept, pcm)
        if events:  # most frames make none
            if self.stream is not None and self.stream.done:  # the reply's answer came back
                self.timings["decode_wait"].append(round(self.clock() - now, 4))
            self._asr_events(events, now)
        return True

    def _announced(self, ev: Any) -> bool:
        """The reply *ev* (a Final) was the line talking — a carrier announcement or a voice
        assistant in the first seconds after the answer, heard by the announcement listener that
        shares this stream (``judge``): it is no reply to the dialogue."""
        from callbot.speech.stream import Partial

        if self.judge is None:
            return False
        # a partial's utterance began by now (its start is known only at its end)
        start = self.frames * FRAME_S if isinstance(ev, Partial) else \
            (self.stream_first - 1) * FRAME_S + float(getattr(ev, "start_s", 0.0))
        if self.judge(ev, start) is None:
            return False
        self.stream = None
        self.listen = None
        return True

    def _heard(self, step: Any, *args: Any) -> list[Any]:
        """The stream's events (``accept(frame)`` or ``finish()``). A reply the speech process
        could not decode (too busy for SPEECH_SERVICE_RESULT_MAX_S, stopped, gone) ends as a
        reply heard as nothing: the dialogue asks again (no_match), the call goes on and ends
        with a classified outcome — never a crash of an answered call."""
        stream = self.stream
        try:
            return list(step(*args))
        except SpeechError as exc:
            if stream is None or not getattr(stream, "done", False):
                raise  # not the reply's decoding (a bad frame): a real error
            from callbot.speech.stream import Final

            end_s = float(getattr(stream, "_last_voiced_end", 0.0)) or self.stream_frames * FRAME_S
            self.timings["speech_errors"].append(round(end_s, 3))
            log.warning("reply not decoded, asked again: %s", exc)
            return [Final("", None, 0.0, round(end_s, 3))]

    def _asr_events(self, events: list[Any], now: float) -> None:
        from callbot.speech.stream import Final, NoInput, Partial, SpeechStarted

        for ev in events:
            if isinstance(ev, Partial):
                if self._announced(ev):
                    return
            elif isinstance(ev, SpeechStarted):
                _turns().begin(self)  # a reply is coming: keep the audio thread off the CPUs
                if self.play_id is not None:
                    self._stop_playback()
                    self.apply(self.engine.on(BargeIn()))
            elif isinstance(ev, Final):
                if self._announced(ev):
                    return
                stream_now = self.stream_frames * FRAME_S
                self.pending_reply_end = (now - max(0.0, stream_now - ev.end_s), now)
                step = self.listen.step if self.listen is not None else ""
                self.stream = None
                self.listen = None
                self._stop_playback()
                actions = self.engine.on(Heard(ev.text or "", float(ev.confidence),
                                             getattr(ev, "pinyin", "") or "",
                                             remote=getattr(ev, "answer", None)))
                self._storing = True
                try:
                    self.apply(actions, reply=(ev, step))
                finally:
                    self._storing = False
                return
            elif isinstance(ev, NoInput):
                _turns().end(self)
                self.stream = None
                self.listen = None
                self.apply(self.engine.on(Silence()))
                return

    def _reply(self, ev: Any, step: str, actions: list[Any]) -> None:
        """Hand the reply (text, audio, what it was understood as) to ``on_reply``."""
        if self.on_reply is None or self.error is not None:
            return
        idx = next((i for i in range(len(self.engine.transcript) - 1, -1, -1)
                    if self.engine.transcript[i].get("role") == "callee"), None)
        line = self.engine.transcript[idx] if idx is not None else {}
        base = (self.stream_first - 1) * FRAME_S  # the stream's time 0 in call time
        reply = Reply(step=step, text=ev.text or "", confidence=float(ev.confidence),
                      start_s=round(base + getattr(ev, "start_s", 0.0), 3),
                      end_s=round(base + ev.end_s, 3), audio=getattr(ev, "audio", b""),
                      pinyin=getattr(ev, "pinyin", "") or line.get("pinyin", "") or "",
                      intent=line.get("intent"), value=line.get("value"),
                      urgent=bool(line.get("urgent", False)),
                      fields=tuple(a.field for a in actions if isinstance(a, Record)), line=idx)
        t0 = self.clock()
        try:
            self.on_reply(reply)
        except BaseException as exc:  # store failed: end the call, then re-raise
            self.error = exc
            self.hangup_reason = "error"
        self.timings["reply_store"].append(round(self.clock() - t0, 4))

    def on_dtmf(self, digit: str) -> None:
        if self.engine.step is None or self.engine.ended is not None:
            return
        if self._locked(self.clock()) or self.held_keys:
            # a key may not cut a prompt that speech may not cut: keep it (in order) for when
            # the prompt ends or reaches its interruptible part
            self.held_keys.append(digit)
            return
        self._stop_playback()
        _turns().end(self)
        self.stream = None
        self.listen = None
        self.pending_reply_end = None  # timings cover spoken replies only
        self.apply(self.engine.on(Digit(digit)))

    def on_playback_ended(self, play_id: int) -> None:
        if play_id != self.play_id:
            return
        self.play_id = None
        if self.transfer_wanted:
            self._start_transfer()
        elif self.hangup_reason is not None:
            self._hangup_now()
        elif self.held_keys:
            self._flush_keys()

    def on_tick(self) -> None:
        """Wall-clock guards for when media stops arriving."""
        now = self.clock()
        if self.play_id is not None and now - self.play_started > self.play_len + _GUARD_S:
            self.play_id = None  # PlaybackEnded never came
            if self.transfer_wanted:
                self._start_transfer()
            elif self.hangup_reason is not None:
                self._hangup_now()
            elif self.held_keys:
                self._flush_keys()
        if self.listen is not None and self.play_id is None and \
                now - self.last_frame > self.listen.timeout_s + _GUARD_S:
            self.listen = None
            self.stream = None
            self.apply(self.engine.on(Silence()))

    def on_disconnected(self) -> None:
        from callbot.speech.stream import Final

        _turns().end(self)
        if self.leg is not None:
            self.leg.end()
        if self.engine.ended is None:
            if self.stream is not None and getattr(self.stream, "in_speech", False):
                step = self.listen.step if self.listen is not None else ""
                for ev in self._heard(self.stream.finish):  # answered, then hung up at once
                    if isinstance(ev, Final) and not self._announced(ev):
                        actions = self.engine.on(Heard(ev.text or "", float(ev.confidence),
                                                         getattr(ev, "pinyin", "") or "",
                                                         remote=getattr(ev, "answer", None)))
                        self._reply(ev, step, actions)
                        if self.error is not None:
                            raise self.error
                        heard: list[Record | Alert] = []
                        for act in actions:
                            if isinstance(act, Record | Alert):
                                heard.append(act)
                            elif isinstance(act, HangUp) and self.on_end is not None:
                                self._store(heard)
                                self.on_end(act.reason)
                        self._store(heard)
                        if self.error is not None:
                            raise self.error
            if self.engine.ended is None:
                self.engine.on(HungUp())


def run_call(phone: Dialler, number: str, script: Script | str | os.PathLike[str],
             variables: Mapping[str, Any] | None, tts: Tts, asr: AsrEngine, *,
             on_record: OnRecord | None = None, on_end: OnEnd | None = None,
             on_reply: OnReply | None = None, record_to: str | os.PathLike[str] | None = None,
             on_heard: OnHeard | None = None, committee: str | None = None,
             transfer: TransferPlan | None = None,
             ring_timeout: float | None = None, max_call_s: float | None = None,
             trailing_silence_s: float | None = defaults.DIALOGUE_END_SILENCE_S,
             min_confidence: float = 0.0, tts_rate: str | None = None,
             announcements: bool = True, extension: str = "",
             clock: Callable[[], float] = time.monotonic) -> CallReport:
    """Place one scripted call and return what happened. Blocks until the call is over.

    *phone* is a started ``callbot.telephony.Phone``; *script* a Script, built-in name or path;
    *variables* the contact's columns; *tts* renders prompts (``render(text) -> wav``, and
    ``prerender(texts)`` when it has one); *asr* an ``AsrEngine``. ``on_record(field, value)`` is
    called the moment each answer is heard (from this thread), ``on_end(reason)`` the moment the
    dialogue ends (``HangUp(reason)``, before the goodbye plays), ``on_reply(Reply)`` for each
    spoken reply before the answers it produced; ``on_heard(records, alerts)``, when given, takes
    the answers and alerts of one reply together instead of ``on_record``. *transfer*: where a
    转人工 answer puts the resident through (the committee's duty phone; None: nowhere, so the
    resident hears the call-back line and an urgent alert is raised). *record_to*: a WAV path
    for the whole call, both sides mixed (``CallReport.recording``). *tts_rate* overrides the
    script's ``rate``; *trailing_silence_s* is the silence that ends a reply where the script
    sets no ``end_silence`` (None: the recogniser's default). *announcements*: listen to the
    early media and the first seconds after the answer for a carrier announcement or a voice
    assistant (:mod:`callbot.announcements`; the outcome follows what it said). Raises
    TemplateError for a bad script and SpeechError when a prompt cannot be rendered — both
    before anything is dialled. *extension* (转123): sent as DTMF after the answer (``[calls]
    extension_delay`` / ``extension_pause`` of the phone's sip.conf; ``,`` or ``p`` pauses); the
    dialogue starts once it is sent.
    """
    if not isinstance(script, Script):
        script = load_script(script)
    engine = DialogueEngine(script, variables or {}, committee=committee,
                            min_confidence=min_confidence,
                            can_transfer=transfer is not None and bool(transfer.to))
    with tempfile.TemporaryDirectory(prefix="callbot-call-") as tmp:
        try:
            prompts = Prompts(tts, engine.prompts(), Path(tmp), voice=script.voice,
                               rate=tts_rate or script.rate,
                               audio=[str(s.audio) for s in script.steps.values()
                                      if getattr(s, "audio", None) is not None],
                               slow=engine.slow_prompts())
        except (OSError, wave.Error) as exc:
            raise SpeechError(f"提示语合成失败 (prompt rendering failed): {exc}") from exc
        # the opening batch (greeting + first question) is joined before dialling, too
        scratch = DialogueEngine(script, variables or {}, committee=committee)
        opening = tuple(prompt_key(a) for a in scratch.start() if isinstance(a, Say))
        if opening:
            prompts.batch(opening)
        listener = announce.listener_for(asr) if announcements else None
        # imported now, not at the answer: a first call's greeting waited for callbot.recordings
        # and SQLAlchemy to import (0.2 s on a quiet box, 1.2 s on a loaded one) in silence
        _turns()
        call = phone.dial(number, ring_timeout=ring_timeout, max_call_s=max_call_s,
                          early_frames=listener is not None, chunks=True)
        if record_to is not None:
            call.record(record_to, ours=True)
        session = _LiveCall(call, engine, prompts, asr, on_record, trailing_silence_s, clock,
                           on_end=on_end, on_reply=on_reply, on_heard=on_heard, phone=phone,
                           transfer=transfer)
        if listener is not None and announce.SHARE_DECODER and listener.asr is asr:
            session.judge = listener.judge  # one decoder for the first seconds, not two
        try:
            result = _loop(call, session, listener, _extension_plan(phone, extension))
        except BaseException:
            _turns().end(session)
            call.hangup()  # never leave a line up behind a crash
            if session.leg is not None:
                session.leg.end()
            try:
                call.wait(10)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.exception("call did not end after a crash")
            raise
    _turns().end(session)
    if session.error is not None:
        raise session.error
    return CallReport(result=result, answers=dict(engine.answers),
                      transcript=list(engine.transcript),
                      ended=engine.ended if engine.transcript else None,
                      timings=session.timings, frames=session.frames,
                      recording=_recorded(record_to, result),
                      alerts=list(engine.alerts), assistant_message=session.message,
                      transfer=session.leg.record.to_json() if session.leg else None)


def _turns() -> Any:
    """This process's ``recordings.TURNS`` (imported by the first ``run_call``, before it dials:
    processes that place no call pay nothing for it; ``callbot.recording_audio`` holds it
    without SQLAlchemy)."""
    from callbot.recording_audio import TURNS

    return TURNS


def _recorded(path: str | os.PathLike[str] | None, result: Any) -> Path | None:
    """The whole-call WAV, when one was asked for and the call was answered (complete by now:
    telephony announces the end only after pjmedia closed the file)."""
    if path is None or str(result.outcome) != "answered" or not Path(path).is_file():
        return None
    return Path(path)


def _extension_plan(phone: Any, extension: str) -> list[tuple[float, str]]:
    """When to send *extension*'s digits, by the phone's sip.conf (``[calls] extension_delay``,
    ``extension_pause``)."""
    from callbot.telephony.dialplan import extension_plan

    conf = getattr(phone, "config", None)
    return extension_plan(extension, float(getattr(conf, "extension_delay_s", 2.0)),
                          float(getattr(conf, "extension_pause_s", 1.0)))


MESSAGE_QUIET_S = 0.6
"""A voice assistant's greeting is over (the message may start) after this much quiet."""
MESSAGE_WAIT_S = 10.0
"""Longest wait for that quiet before the message starts anyway."""
MESSAGE_TAIL_S = 0.5
"""After the message ends, the robot hangs up this much later (its last words are on the way)."""


class _Message:
    """The template's ``assistant:`` message on a call a voice assistant answered: waits for
    the assistant's greeting to end (MESSAGE_QUIET_S of quiet), plays, hangs up after it."""

    def __init__(self, call: Any, session: _LiveCall, text: str):
        self.call, self.session, self.text = call, session, text
        self.quiet = 0
        self.since = time.monotonic()
        self.play_id: int | None = None
        self.hangup_at: float | None = None
        call.stop_playback()  # the greeting played over the assistant: no one hears it

    def on_frame(self, pcm: bytes) -> None:
        from callbot.telephony.audio import rms

        if self.play_id is not None or self.hangup_at is not None:
            return
        self.quiet = 0 if rms(pcm) > 300.0 else self.quiet + 1
        if self.quiet * FRAME_S >= MESSAGE_QUIET_S or time.monotonic() - self.since > \
                MESSAGE_WAIT_S:
            path, length = self.session.prompts.batch((self.text,))
            self.session.message = self.text
            log.info("voice assistant answered: leaving the message (%.1f s)", length)
            self.play_id = self.call.play(path)
            self.hangup_at = time.monotonic() + length + _GUARD_S  # if PlaybackEnded never comes

    def on_playback_ended(self, play_id: int) -> None:
        if play_id == self.play_id:
            self.hangup_at = min(self.hangup_at or 0.0, time.monotonic() + MESSAGE_TAIL_S)

    def poll(self) -> None:
        if self.hangup_at is not None and time.monotonic() >= self.hangup_at:
            self.hangup_at = None
            self.call.hangup()
        elif self.play_id is None and time.monotonic() - self.since > MESSAGE_WAIT_S + 1:
            self.call.hangup()  # no media at all


def _leave_message(call: Any, session: _LiveCall, heard: announce.Heard | None
                   ) -> _Message | None:
    """The line said what became of the call: hang up — or, when a voice assistant answered and
    the template has an ``assistant:`` message, leave it first (the returned ``_Message``)."""
    session.stream = session.listen = None  # what the line said is no reply to the dialogue
    text = None
    if heard is not None and heard.outcome == "assistant" and not heard.early and call.answered:
        try:
            text = session.engine.assistant_message()
        except Exception:  # noqa: BLE001 - validated before dialling; never keep a line up
            log.exception("assistant message could not be rendered")
    if not text:
        call.hangup()
        return None
    return _Message(call, session, text)


def _loop(call: Any, session: _LiveCall,  # noqa: C901
          listener: announce.AnnouncementListener | None = None,
          extension: list[tuple[float, str]] | None = None) -> Any:
    from callbot.telephony import (
        Answered,
        Disconnected,
        Dtmf,
        Frame,
        PlaybackEnded,
        TransferStatus,
    )
    from callbot.telephony.dialplan import EXTENSION_SETTLE_S

    pending = list(extension or [])
    answered_at: float | None = None
    start_at: float | None = None  # extension: when the dialogue starts (digits sent)
    message: _Message | None = None  # the assistant: message being left
    while True:
        heard = listener is not None and listener.heard is not None
        if message is not None:
            message.poll()
        if not heard:
            session.poll_transfer()
        if answered_at is not None and (pending or start_at is not None):
            now = time.monotonic()
            while pending and now - answered_at >= pending[0][0]:
                digits = pending.pop(0)[1]
                call.send_dtmf(digits)
                if not pending:
                    start_at = now + EXTENSION_SETTLE_S * len(digits) + 0.3
            if start_at is not None and now >= start_at and not call.done:
                start_at = None
                if not heard:
                    session.on_answered()
        try:
            ev = call.events.get(timeout=0.02 if pending or start_at or message else 0.1)
        except queue.Empty:
            if call.answered and not heard:
                session.on_tick()
            continue
        if isinstance(ev, TransferStatus):
            session.on_transfer_status(ev.code, ev.reason, ev.final)
        elif isinstance(ev, Frame):
            chunk, early = ev.pcm, ev.early
            # the bridge's chunk (dial(chunks=True)): its 20 ms frames, in this one wake-up
            for i in range(0, len(chunk) - _FRAME_BYTES + 1, _FRAME_BYTES):
                pcm = chunk[i:i + _FRAME_BYTES] if len(chunk) > _FRAME_BYTES else chunk
                decoded = False
                if not early and (listener is None or listener.heard is None):
                    # (an announcement is no reply to the dialogue); the listener may share
                    # this stream (session.judge) and then decodes nothing itself
                    decoded = session.on_frame(pcm) and session.judge is not None
                    if listener is not None and listener.heard is not None:
                        message = _leave_message(call, session, listener.heard)
                        continue
                if listener is not None and listener.listening and listener.feed(
                        pcm, early, decoded=decoded):
                    # the line said what became of the call: no one to talk to (an assistant
                    # may take the template's message first)
                    message = _leave_message(call, session, listener.heard)
                elif message is not None:
                    message.on_frame(pcm)
        elif isinstance(ev, Answered):
            if extension:  # 转分机: the digits first, the dialogue after them
                answered_at = time.monotonic()
            else:
                session.on_answered()
        elif heard:  # the dialogue is over: only the message's end matters now
            if isinstance(ev, PlaybackEnded) and message is not None:
                message.on_playback_ended(ev.play_id)
            elif isinstance(ev, Disconnected):
                return _finish(session, listener, ev.result)
        elif isinstance(ev, Dtmf):
            session.on_dtmf(ev.digit)
        elif isinstance(ev, PlaybackEnded):
            session.on_playback_ended(ev.play_id)
        elif isinstance(ev, Disconnected):
            return _finish(session, listener, ev.result)


def _finish(session: _LiveCall, listener: announce.AnnouncementListener | None,
            result: Any) -> Any:
    if session.engine.transcript:  # answered: close the dialogue
        session.on_disconnected()
    if listener is not None:
        announce.apply(listener, result)
    if session.message is not None:
        result.extra["assistant_message"] = session.message
    return result
