"""Carrier announcements and voice assistants: what the line says instead of a resident.

Chinese carriers answer a failed call with a recorded announcement, usually as early media (183)
while "ringing", sometimes after answering (200): 您拨打的号码是空号 / 已关机 / 已停机 / 暂时无法
接通 / 正在通话中. More and more phones are picked up by a voice assistant or a 来电秘书 service.
The recogniser that hears residents (the ``pinyin`` engine) hears these too; this module holds the
phrases (:data:`PHRASES`), reads a transcript against them (:func:`classify`) and listens to one
call (:class:`AnnouncementListener`: early media and the first seconds after an answer).

What an announcement says wins over the SIP code that follows it (a 183 "已关机" then 480 is
``powered_off``, not ``unreachable``); an answered call whose first seconds are an announcement is
not ``answered``. docs/telephony.md says how it is decided and what it costs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from callbot import pinyin as py
from callbot.exceptions import SpeechError

log = logging.getLogger(__name__)

OUTCOMES = ("invalid_number", "powered_off", "suspended", "unreachable", "busy", "assistant")
"""Outcomes an announcement decides (besides the SIP-code outcomes of callbot.telephony)."""

PHRASES: dict[str, tuple[str, ...]] = {
    "invalid_number": ("是空号", "空号", "号码不存在", "号码有误", "不是有效号码", "号码错误",
                       "号码是空号", "电话是空号"),
    "powered_off": ("已关机", "关机", "电话已关机", "用户已关机"),
    "suspended": ("已停机", "停机", "已欠费", "欠费", "电话已停机", "用户已停机", "欠费停机",
                  "用户已欠费", "电话已欠费"),
    "unreachable": ("暂时无法接通", "无法接通", "不在服务区", "无人接听", "暂时无人接听",
                    "电话暂时无人接听"),
    "busy": ("正在通话中", "通话中", "正在通话", "正忙", "电话正在通话中", "用户正在通话中"),
    "assistant": ("语音助手", "来电秘书", "智能助理", "留言", "机主", "转告", "不方便接听",
                  "我是机主的"),
}
"""Phrases per outcome, as the carriers and assistants say them (several wordings each). Searched
in the toned pinyin with :func:`callbot.intents.find_phrase` (fuzzy on tones and the model's slips);
the longest phrase heard wins, so 暂时无法接通 beats a stray 通话."""

_ORDER = {k: i for i, k in enumerate(OUTCOMES)}

AFTER_ANSWER_S = 4.0
"""Seconds after the answer that are listened to for an announcement or an assistant."""
MAX_EARLY_S = 45.0
"""Early media listened to at most, seconds (a long ringback of music costs no more)."""
SHARE_DECODER = True
"""After the answer, the listener reads the utterances of the dialogue's own stream when both
are on one engine, instead of decoding the same audio a second time (bench/calls.py
--announcements measures both ways)."""


@dataclass(frozen=True)
class Heard:
    """An announcement recognised on a call."""

    outcome: str
    phrase: str
    """The phrase of :data:`PHRASES` that decided it."""
    text: str
    """What was heard (the recogniser's Chinese rendering), for staff and ``--json``."""
    early: bool
    """True when heard in early media (before any answer)."""


CARRIER_OPENINGS = ("您拨打的", "拨打的", "您所拨打的")
"""How carriers' announcements open: after an answer, a short phrase (fewer than 3 syllables:
关机, 正忙, 留言 …) counts only in an utterance that has one of these — a resident who picks up
saying 我正忙着呢 is a resident."""


def classify(syllables: Sequence[py.Syllable] | str, *, answered: bool = False
             ) -> tuple[str, str] | None:
    """``(outcome, phrase)`` for a transcript (syllables, toned pinyin or Chinese text), or None.

    A voice assistant wins whenever one of its phrases is heard (an assistant also says 机主不方便
    接听); otherwise the longest phrase heard wins, among equally long ones the order of
    :data:`OUTCOMES`. *answered*: heard after an answer (someone may be a person), so short
    phrases need a carrier opening (:data:`CARRIER_OPENINGS`)."""
    from callbot import intents

    syls = _syllables(syllables)
    if not syls:
        return None
    opened = not answered or intents.find_phrase(syls, CARRIER_OPENINGS) is not None
    best: tuple[int, int, int, str, str] | None = None
    for outcome, phrases in PHRASES.items():
        found = intents.find_phrase(syls, phrases if opened else
                                    [p for p in phrases if len(py.from_text(p)) >= 3])
        if found is None:
            continue
        cand = (int(outcome == "assistant"), len(py.from_text(found)), -_ORDER[outcome],
                outcome, found)
        if best is None or cand[:3] > best[:3]:
            best = cand
    return (best[3], best[4]) if best else None


def _chinese(text: str) -> str:
    """A partial transcript in characters (the pinyin engine's partials are toned pinyin)."""
    if not text or any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return text
    from callbot.speech import hanzi

    return hanzi.render(py.from_string(text))


def _syllables(x: Sequence[py.Syllable] | str) -> list[py.Syllable]:
    if not isinstance(x, str):
        return list(x)
    s = x.strip()
    if not s:
        return []
    if any("\u4e00" <= ch <= "\u9fff" for ch in s):
        return list(py.from_text(s))
    return list(py.from_string(s))


class AnnouncementListener:
    """Listens to one call's early media and first seconds after the answer.

    Feed it every frame (``feed(pcm, early=...)``): each utterance the recogniser ends is read
    against :data:`PHRASES`; the first that matches is ``heard``. It stops listening (costs
    nothing more) once something is heard, once :data:`AFTER_ANSWER_S` of the answered call have
    passed, or after :data:`MAX_EARLY_S` of early media. ``finish()`` at the end of the call
    decodes a half-heard utterance (an announcement cut short by the 4xx that follows it)."""

    def __init__(self, asr: Any, *, after_answer_s: float = AFTER_ANSWER_S,
                 max_early_s: float = MAX_EARLY_S):
        self.asr = asr
        self.after_answer_s = after_answer_s
        self.max_early_s = max_early_s
        self.heard: Heard | None = None
        self.texts: list[str] = []
        """Every utterance heard (announcements or not), in order."""
        self.cpu_s = 0.0
        """Thread CPU seconds spent listening (bench/calls.py reports it per call)."""
        self.shared_frames = 0
        """Answered frames the listener did not decode: the dialogue's stream did (feed's
        *decoded*)."""
        self._stream: Any = None
        self._early_frames = 0
        self._answered_frames = 0
        self._done = False
        self._answered = False

    @property
    def listening(self) -> bool:
        return not self._done

    @property
    def text(self) -> str | None:
        """What was heard, for ``callbot call --json`` ``announcement``: the deciding utterance,
        else None."""
        return self.heard.text if self.heard else None

    def feed(self, pcm: bytes, early: bool, decoded: bool = False) -> Heard | None:
        """One 20 ms frame; returns the announcement when this frame completed one.

        *decoded*: after the answer, the dialogue's own stream on this listener's engine decodes
        this frame — the listener then decodes nothing itself (one decoder per call, not two:
        the session hands it that stream's utterances, :meth:`judge`), unless it is in the
        middle of an utterance of its own (it hears that one to its end)."""
        if self._done:
            return None
        t0 = time.thread_time()
        try:
            if early:
                self._early_frames += 1
                if self._early_frames * 0.02 > self.max_early_s:
                    return self._close()
            else:
                if not self._answered:
                    self._answered = True
                    self._flush(early=True)  # early media ended with the answer
                    if self._done:
                        return self.heard
                self._answered_frames += 1
                if self._answered_frames * 0.02 > self.after_answer_s:
                    return self._close()
                if decoded and not getattr(self._stream, "in_speech", False):
                    self._stream = None  # the dialogue's stream hears this: judge() its replies
                    self.shared_frames += 1
                    return None
            if self._stream is None:
                self._stream = self.asr.stream([], no_input_s=3600.0, max_reply_s=8.0,
                                               trailing_silence_s=0.4)
            try:
                events = self._stream.accept(pcm)
            except SpeechError as exc:  # the speech process could not decode it: none heard
                log.warning("announcement not decoded: %s", exc)
                events = []
            for ev in events:
                if self._final(ev, early):
                    return self.heard
            if self._stream is not None and self._stream.done:
                self._stream = None
            return None
        finally:
            self.cpu_s += time.thread_time() - t0

    def judge(self, ev: Any, start_s: float) -> Heard | None:
        """An utterance the dialogue's stream heard after the answer (a ``Final``, or a
        ``Partial`` of one still going on), beginning *start_s* seconds after the answer: the
        announcement, when it is one of the first :attr:`after_answer_s` seconds (the session
        then does not take it for a reply). A partial decides as soon as the phrase is heard,
        before the dialogue's endpointing (longer than the listener's) would end the
        utterance."""
        from callbot.speech.stream import Partial

        if self.heard is not None or start_s > self.after_answer_s:
            return None
        t0 = time.thread_time()
        try:
            partial = isinstance(ev, Partial)
            text = getattr(ev, "text", "") or ""
            found = classify(text if partial else getattr(ev, "pinyin", "") or text,
                             answered=True)
            if not partial and text:
                self.texts.append(text)
            if found is None:
                return None
            if partial:
                text = _chinese(text)
                self.texts.append(text)
            self.heard = Heard(found[0], found[1], text, False)
            self._done = True
            self._stream = None
            log.info("announcement heard (answered, dialogue's stream): %s → %s", text, found[0])
            return self.heard
        finally:
            self.cpu_s += time.thread_time() - t0

    def finish(self) -> Heard | None:
        """The call ended: decode what is half heard; the announcement, if any."""
        if not self._done:
            t0 = time.thread_time()
            self._close()
            self.cpu_s += time.thread_time() - t0
        return self.heard

    def _close(self) -> Heard | None:
        self._flush(early=not self._answered)
        self._done = True
        self._stream = None
        return self.heard

    def _flush(self, early: bool) -> None:
        stream, self._stream = self._stream, None
        if stream is None or self._done:
            return
        if getattr(stream, "in_speech", False):
            try:
                events = stream.finish()
            except SpeechError as exc:
                log.warning("announcement not decoded: %s", exc)
                events = []
            for ev in events:
                if self._final(ev, early):
                    return

    def _final(self, ev: Any, early: bool) -> bool:
        from callbot.speech.asr import Final

        if not isinstance(ev, Final):
            return False
        self._stream = None
        text = ev.text or ""
        if text:
            self.texts.append(text)
        found = classify(ev.pinyin or text, answered=not early)
        if found is None:
            return False
        self.heard = Heard(found[0], found[1], text, early)
        self._done = True
        log.info("announcement heard (%s): %s → %s", "early media" if early else "answered",
                 text, found[0])
        return True


_shared: dict[str, Any] = {}


def listener_for(asr: Any) -> AnnouncementListener | None:
    """A listener for one call: on *asr* when it is the ``pinyin`` engine (free recognition),
    else on a ``pinyin`` engine loaded once per process. None (and a warning, once) when no
    pinyin model can be loaded: the call is then classified by its SIP code alone."""
    if getattr(asr, "name", "") == "pinyin":
        return AnnouncementListener(asr)
    if "engine" not in _shared:
        try:
            from callbot.speech.asr import load_asr

            _shared["engine"] = load_asr("pinyin", warm=False)
        except Exception as exc:  # noqa: BLE001 - a missing model must not stop calls
            log.warning("运营商提示音识别不可用 (announcements not recognised): %s", exc)
            _shared["engine"] = None
    eng = _shared["engine"]
    return AnnouncementListener(eng) if eng is not None else None


def apply(listener: AnnouncementListener, result: Any) -> None:
    """At the end of a call: decode what is half heard and, when an announcement was heard, let
    it decide the outcome of *result* (a ``CallResult``); its CPU cost goes in ``extra``."""
    heard = listener.finish()
    result.extra["announcement_cpu_s"] = round(listener.cpu_s, 4)
    if getattr(listener, "shared_frames", 0):
        result.extra["announcement_shared_s"] = round(listener.shared_frames * 0.02, 2)
    if heard is not None:
        result.heard(heard.outcome, heard.text)
        result.extra["announcement_phrase"] = heard.phrase


class PendingListener:
    """A listener whose engine is still loading (``callbot call``: the model loads while the
    call is placed, so dialling waits for nothing). Frames are kept until it is ready."""

    def __init__(self) -> None:
        import threading

        self._ready = threading.Event()
        self._inner: AnnouncementListener | None = None
        self._backlog: list[tuple[bytes, bool]] = []
        threading.Thread(target=self._load, daemon=True, name="announcement-model").start()

    def _load(self) -> None:
        try:
            self._inner = listener_for(None)
        finally:
            self._ready.set()

    def _get(self, wait: bool) -> AnnouncementListener | None:
        if wait:
            self._ready.wait(120)
        if not self._ready.is_set():
            return None
        lis = self._inner
        if lis is not None and self._backlog:
            backlog, self._backlog = self._backlog, []
            for pcm, early in backlog:
                if lis.listening:
                    lis.feed(pcm, early)
        return lis

    @property
    def listening(self) -> bool:
        lis = self._get(False)
        return not self._ready.is_set() or (lis is not None and lis.listening)

    @property
    def heard(self) -> Heard | None:
        lis = self._get(False)
        return lis.heard if lis is not None else None

    @property
    def text(self) -> str | None:
        lis = self._get(False)
        return lis.text if lis is not None else None

    def feed(self, pcm: bytes, early: bool) -> Heard | None:
        lis = self._get(False)
        if lis is None:
            if not self._ready.is_set() and len(self._backlog) < MAX_EARLY_S * 50:
                self._backlog.append((pcm, early))
            return None
        return lis.feed(pcm, early)

    def finish(self) -> Heard | None:
        """Waits for the model only when there is audio to judge (a call that rang without
        early media and was never answered ends at once)."""
        lis = self._get(bool(self._backlog))
        return lis.finish() if lis is not None else None

    @property
    def cpu_s(self) -> float:
        lis = self._get(False)
        return lis.cpu_s if lis is not None else 0.0
