"""The dialogue engine: events in (what the callee said or pressed), actions out (what to say,
what to listen for, what to record, when to hang up). Pure and deterministic, no I/O: the same
engine runs a real call (``callbot.session``), ``callbot simulate`` and the tests.

    engine = DialogueEngine(script, {"姓名": "张阿姨"})
    actions = engine.start()             # [Say(greeting), Say(question), Listen(...)]
    actions = engine.on(Heard("需要"))    # [Record("need_masks", True), Say(...), Listen(...)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from callbot import intents as _intents
from callbot import pinyin as _pinyin
from callbot.script import DEFAULT_RETRIES, DEFAULT_SAY, Handler, Script, Step

# --- events (what happened on the line) ---------------------------------------------------------


@dataclass(frozen=True)
class Heard:
    """The recogniser's final result for one reply; ``pinyin`` is its toned pinyin when the
    recogniser gives one (typed text is read with pypinyin: the same classifier either way)."""

    text: str
    confidence: float = 1.0
    pinyin: str = ""
    remote: dict[str, Any] | None = field(default=None, compare=False)
    """The host's speech process's classification (``Final.answer``): used when it was made
    among this question's intents, so a line process never builds the lexicon."""


@dataclass(frozen=True)
class Digit:
    """A DTMF key the callee pressed."""

    d: str


@dataclass(frozen=True)
class Silence:
    """The question's listening time ran out with no reply."""


@dataclass(frozen=True)
class BargeIn:
    """The callee started speaking while a prompt was playing."""


@dataclass(frozen=True)
class HungUp:
    """The callee hung up."""


def typed_events(reply: str) -> list[Heard | Digit | Silence]:
    """A typed reply as events, for ``callbot simulate`` and the web "试一试" box: ``#1`` (or
    ``#13``) key presses, an empty line silence, anything else speech heard with full confidence."""
    text = reply.strip()
    if not text:
        return [Silence()]
    if text.startswith("#") and len(text) > 1:
        keys = text[1:].replace(" ", "")
        if all(k in "0123456789*#" for k in keys):
            return [Digit(k) for k in keys]
    return [Heard(text, 1.0)]


@dataclass(frozen=True)
class TransferResult:
    """How a transfer to the duty phone went: ``answered`` (then the two are talking), ``to``
    whom it was dialled."""

    answered: bool
    to: str = ""


Event = Heard | Digit | Silence | BargeIn | HungUp | TransferResult

# --- actions (what to do next) ------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Play *text*; the callee may interrupt it when ``barge_in_allowed``. ``audio``: a staff
    recording to play instead of speaking *text* (which stays as its transcript). ``slow``: the
    question asked again after 你说什么: spoken slower (``defaults.DIALOGUE_REPEAT_RATE``)."""

    text: str
    step: str
    barge_in_allowed: bool = True
    audio: str | None = None
    slow: bool = False


@dataclass(frozen=True)
class Listen:
    """Listen for a reply: ``expect`` are the phrases a keyword-spotting ASR should look for,
    ``keymap`` the DTMF keys this question accepts, ``timeout_s`` the wait before silence."""

    expect: list[str]
    keymap: dict[str, Any]
    timeout_s: float
    step: str = ""
    intents: list[str] = field(default_factory=list)
    end_silence_s: float | None = None
    """Silence that ends a reply (the script's ``end_silence``); None: the call's default."""


@dataclass(frozen=True)
class Record:
    """Store one answer field now (a call may drop at any moment)."""

    field: str
    value: Any


@dataclass(frozen=True)
class HangUp:
    """End the call; ``reason`` is how the dialogue ended (also in ``engine.ended``)."""

    reason: str


@dataclass(frozen=True)
class Alert:
    """Tell staff now (the 待处理 page and the committee's group chat): ``reason`` is one of
    ``callbot.alerts.REASONS``, ``said`` the reply that raised it. Comes in the same batch as the
    Records of that reply, so a call stores both in one transaction."""

    reason: str
    urgent: bool = False
    said: str = ""
    detail: str = ""
    """What happened, when it is more than the reply (值班电话无人接听)."""


@dataclass(frozen=True)
class Transfer:
    """转人工: once the Says before it have played, put the callee through to the committee's
    duty phone; answer with a ``TransferResult`` event."""

    step: str = ""


Action = Say | Listen | Record | HangUp | Alert | Transfer

WELFARE_FIELD = "welfare"
"""A template field named so, recorded ``needs_help``, raises a needs-help alert (urgent when the
``urgent`` field is true)."""

_RETRY_KINDS = ("no_input", "no_match")
_ENDINGS = {"emergency": "emergency", "human": "human", "stop": "stop", "later": "callback"}
"""Intents heard at every question and the end reason they give where the script says nothing."""


def _remote(event: Heard, asked: list[str]) -> tuple[_intents.Answer | None, str] | None:
    """(answer, transcript pinyin) the speech process gave for *event* among the *asked*
    intents; None when it classified nothing or among other intents (classify here then)."""
    got = event.remote
    if not isinstance(got, dict) or got.get("asked") != list(asked):
        return None
    a = got.get("answer")
    if a is None:
        return None, str(got.get("pinyin") or "")
    return (_intents.Answer(str(a["intent"]), a["value"], str(a["text"]), urgent=bool(a["urgent"]),
                            pinyin=str(a["pinyin"])), str(got.get("pinyin") or ""))


_SAY_HOPS_MAX = 50


class DialogueEngine:
    """Runs one script with one contact. Call :meth:`start` once, then :meth:`on` per event."""

    def __init__(self, script: Script, contact_vars: Mapping[str, Any] | None = None, *,
                 committee: str | None = None, date: Any = None,
                 clock: Callable[[], float] | None = None, min_confidence: float = 0.0,
                 max_quantity: int | None = None, can_transfer: bool = False) -> None:
        self.script = script
        self.can_transfer = can_transfer
        """The committee has a duty phone: a ``transfer: true`` answer that also says where to
        go without one (``next`` / ``end``) goes there when this is False."""
        self._base = script.context(contact_vars, committee=committee, date=date)
        self._clock = clock or time.monotonic
        self._t0: float | None = None
        self.min_confidence = min_confidence
        self.answers: dict[str, Any] = {}
        """Fields recorded so far (field → value)."""
        self.transcript: list[dict[str, Any]] = []
        """Every line of the conversation: ``role`` (bot | callee), ``text``, ``t`` (s since start)."""
        self.ended: str | None = None
        """How the dialogue ended (completed, no_input, no_match, wrong_person, max_turns,
        hung_up…), None while it runs."""
        self.turns = 0
        self.step: str | None = None
        """The question waiting for a reply, None when none is."""
        self.listening: Listen | None = None
        self._counts: dict[str, int] = {}
        self._max_quantity = max_quantity
        self.alerts: list[Alert] = []
        """Alerts raised so far (what ``callbot simulate --json`` shows)."""
        self.transfer: Transfer | None = None
        """The transfer the dialogue asked for, if any (waiting for its result while
        ``transferring``)."""
        self.transferring = False
        self._intent: str | None = None  # the intent of the reply being handled

    # -- public API --

    def start(self) -> list[Action]:
        """The opening actions: greeting, first question and what to listen for."""
        if self._t0 is not None:
            raise RuntimeError("DialogueEngine.start() called twice")
        self._t0 = self._clock()
        out: list[Action] = []
        self._goto(self.script.start, out)
        return out

    def on(self, event: Event) -> list[Action]:
        """The actions that answer *event*; [] once the dialogue has ended."""
        if self._t0 is None:
            raise RuntimeError("DialogueEngine.on() before start()")
        if self.ended is not None:
            return []
        if isinstance(event, HungUp):
            self._finish_state("hung_up")
            return []
        if isinstance(event, TransferResult):
            return self._transfer_result(event)
        if isinstance(event, BargeIn):
            for line in reversed(self.transcript):
                if line["role"] == "bot":
                    line["interrupted"] = True
                    break
            return []
        step = self.script.steps.get(self.step or "")
        if step is None:
            return []  # nothing is being asked (a prompt is still playing)
        out: list[Action] = []
        self._intent = None
        if isinstance(event, Silence):
            self._retry(step, "no_input", out)
        elif isinstance(event, Digit):
            text = f"按键{event.d}"
            self._line("callee", text)
            try:
                answer = _intents.from_digit(event.d, step.keys)
            except ValueError:
                answer = None
            self._answer(step, answer, out, spoken=False)
        elif isinstance(event, Heard):
            self._line("callee", event.text, confidence=round(float(event.confidence), 3))
            answer = None
            remote = _remote(event, step.intents())
            if event.confidence >= self.min_confidence:
                answer = remote[0] if remote is not None else \
                    _intents.classify(event.text, step.intents(), pinyin=event.pinyin or None)
            line = self.transcript[-1]
            line["pinyin"] = answer.pinyin if answer else (
                event.pinyin or (remote[1] if remote is not None else _pinyin.pinyin_of(event.text)))
            if answer is not None:
                line.update(intent=answer.intent, value=answer.value, urgent=answer.urgent)
            self._answer(step, answer, out, spoken=True)
        else:
            raise TypeError(f"unknown dialogue event {event!r}")
        self._raise_alerts(out)
        return out

    def prompts(self) -> list[str]:
        """Every text this engine may say (for TTS pre-rendering before dialling)."""
        return self.script.all_prompts(self._base)

    def assistant_message(self) -> str | None:
        """The template's ``assistant:`` message for this contact (None: none, the default),
        written in the transcript as the robot's line (step ``assistant``) once the dialogue began."""
        if not self.script.assistant:
            return None
        text = self._render(self.script.assistant)
        if text and self._t0 is not None:
            self._line("bot", text, step="assistant")
        return text or None

    def slow_prompts(self) -> list[str]:
        """The questions as they are asked again slower after 你说什么 (``Say.slow``)."""
        out = []
        for step in self.script.steps.values():
            if step.kind == "ask" and step.audio is None:
                try:
                    out.append(self._render(step.text))
                except Exception:  # noqa: BLE001 - a prompt needing answers not heard yet
                    continue
        return [t for t in dict.fromkeys(out) if t]

    # -- internals --

    def _raise_alerts(self, out: list[Action]) -> None:
        """A turn that recorded needs help gets an Alert right after its Records (once per call;
        again only when it became urgent); a request for a person that was not put through
        gets one too."""
        if self._intent == "human" and not any(isinstance(a, Transfer) for a in out) \
                and not any(x.reason == "human" for x in self.alerts):
            alert = Alert("human", False, self._last_said())
            out.insert(0, alert)
            self.alerts.append(alert)
        if not any(isinstance(a, Record) and a.field == WELFARE_FIELD and a.value == "needs_help"
                   for a in out):
            return
        urgent = self.answers.get("urgent") is True
        if any(x.reason == "needs_help" and (x.urgent or not urgent) for x in self.alerts):
            return
        alert = Alert("needs_help", urgent, self._last_said())
        last = max(i for i, a in enumerate(out) if isinstance(a, Record))
        out.insert(last + 1, alert)
        self.alerts.append(alert)

    def _last_said(self) -> str:
        return next((line["text"] for line in reversed(self.transcript)
                     if line["role"] == "callee"), "")

    def _start_transfer(self, step: Step, handler: Handler, out: list[Action]) -> None:
        """Say the short line, then ask the session to dial the duty phone; with no duty phone,
        go where the answer says instead (its ``next`` / ``end``), when it says."""
        if not self.can_transfer and (handler.next or handler.end):
            self.step = None
            self.listening = None
            if handler.next:
                self._goto(handler.next, out)
            else:
                self._end(handler.end or "completed", step.name, out)
            return
        self._say(handler.say or DEFAULT_SAY["transfer"], step.name, out, barge_in=False)
        self.step = None
        self.listening = None
        self.transferring = True
        self.transfer = Transfer(step.name)
        out.append(self.transfer)

    def _transfer_result(self, event: TransferResult) -> list[Action]:
        if not self.transferring or self.ended is not None:
            return []
        self.transferring = False
        out: list[Action] = []
        step = self.transfer.step if self.transfer else ""
        if event.answered:
            self._finish_state("transfer")
            out.append(HangUp("transfer"))
            return out
        # nobody took it: the resident hears that someone will call back; staff are told now
        urgent = self.answers.get("urgent") is True  # an emergency: tell her to ring 120 too
        why = "情况紧急，转接" if urgent else "居民要求转人工，"
        detail = (f"{why}值班电话 {event.to} 无人接听，请尽快回电" if event.to
                  else f"{why}但没有配置值班电话，请尽快回电")
        alert = Alert("human", True, self._last_said(), detail)
        self.alerts.append(alert)
        out.append(alert)
        self._end("transfer_failed", step, out,
                  say=DEFAULT_SAY["end_transfer_failed_urgent"] if urgent else None)
        return out

    def _t(self) -> float:
        return round(self._clock() - (self._t0 or 0.0), 3)

    def _line(self, role: str, text: str, **extra: Any) -> None:
        self.transcript.append({"role": role, "text": text, "t": self._t(), **extra})

    def _render(self, text: str) -> str:
        ctx = dict(self._base)
        ctx["answers"] = dict(self.answers)
        return self.script.render(text, ctx)

    def _say(self, text: str, step: str, out: list[Action], *, barge_in: bool = True,
             audio: str | None = None, slow: bool = False) -> None:
        rendered = self._render(text)
        if not rendered:
            return
        self._line("bot", rendered, step=step)
        out.append(Say(rendered, step, barge_in, audio, slow=slow and audio is None))

    def _finish_state(self, reason: str) -> None:
        self.ended = reason
        self.step = None
        self.listening = None

    def _end(self, reason: str, step: str, out: list[Action], say: str | None = None) -> None:
        if say is None:
            say = DEFAULT_SAY.get(f"end_{reason}")
        if say:
            self._say(say, step, out, barge_in=False)
        self._finish_state(reason)
        out.append(HangUp(reason))

    def _goto(self, name: str, out: list[Action]) -> None:
        for _ in range(_SAY_HOPS_MAX):
            step = self.script.steps[name]
            if step.kind == "ask":
                self._counts = {}
                self._ask(step, out)
                return
            self._say(step.text, step.name, out, barge_in=step.barge_in,
                  audio=None if step.audio is None else str(step.audio))
            if step.end is not None:
                self._finish_state(step.end)
                out.append(HangUp(step.end))
                return
            assert step.next is not None  # validation guarantees it
            name = step.next
        self._end("max_turns", name, out)

    def _ask(self, step: Step, out: list[Action], *, slow: bool = False) -> None:
        self.turns += 1
        if self.turns > self.script.max_turns:
            self._end("max_turns", step.name, out)
            return
        self._say(step.text, step.name, out, barge_in=step.barge_in,
                  audio=None if step.audio is None else str(step.audio), slow=slow)
        intents = step.intents()
        field_name = next((h.record for i, h in step.answers.items()
                           if i == "quantity" and h.record), None)
        max_q = self._max_quantity
        if max_q is None and field_name and self.script.fields[field_name].max is not None:
            max_q = self.script.fields[field_name].max
        listen = Listen(expect=_intents.phrases(intents, max_quantity=max_q or 5),
                        keymap=dict(step.keys), timeout_s=step.timeout_s, step=step.name,
                        intents=intents, end_silence_s=self.script.end_silence_s)
        self.step = step.name
        self.listening = listen
        out.append(listen)

    def _handler(self, step: Step, kind: str) -> Handler | None:
        return step.handlers.get(kind) or self.script.handlers.get(kind)

    def _retry(self, step: Step, kind: str, out: list[Action], *, say: str | None = None) -> None:
        """Reprompt after silence / a reply we could not use, or give up politely."""
        handler = self._handler(step, kind)
        counter = "no_input" if kind == "no_input" else "no_match"
        retries = handler.retries if handler and handler.retries is not None else \
            DEFAULT_RETRIES.get(kind, DEFAULT_RETRIES["no_match"])
        self._counts[counter] = self._counts.get(counter, 0) + 1
        if self._counts[counter] <= retries:
            again = handler.say_for(self._counts[counter]) if handler else None
            self._say(say or again or DEFAULT_SAY[kind], step.name, out)
            self._reask(step, out)
            return
        reason = "no_input" if kind == "no_input" else "no_match"
        if handler and handler.transfer:
            self._apply_sets(handler, out)
            self._start_transfer(step, handler, out)
        elif handler and handler.next:
            self._apply_sets(handler, out)
            self._goto(handler.next, out)
        else:
            self._end(handler.end if handler and handler.end else reason, step.name, out)

    def _reask(self, step: Step, out: list[Action], *, slow: bool = False) -> None:
        self._ask(step, out, slow=slow)  # the same question again: retry counts carry on

    def _apply_sets(self, handler: Handler, out: list[Action]) -> None:
        for name, value in handler.set.items():
            self._record(name, self.script.fields[name].coerce(value), out)

    def _record(self, name: str, value: Any, out: list[Action]) -> None:
        self.answers[name] = value
        out.append(Record(name, value))

    def _answer(self, step: Step, answer: _intents.Answer | None, out: list[Action], *,  # noqa: C901
                spoken: bool) -> None:
        self._intent = answer.intent if answer is not None else None
        if answer is None:
            self._retry(step, "no_match", out)
            return
        if answer.intent == "repeat" and "repeat" not in step.answers:
            handler = self._handler(step, "repeat")
            self._say(handler.say if handler and handler.say else DEFAULT_SAY["repeat"],
                      step.name, out)
            self._reask(step, out, slow=True)  # elderly listeners: the question again, slower
            return
        if answer.intent == "wrong_person" and "wrong_person" not in step.answers:
            handler = self._handler(step, "wrong_person")
            if handler and handler.next:
                if handler.say:
                    self._say(handler.say, step.name, out)
                self._apply_sets(handler, out)
                self._goto(handler.next, out)
            else:
                self._end(handler.end if handler and handler.end else "wrong_person", step.name,
                          out, say=handler.say if handler else None)
            return
        handler = step.answers.get(answer.intent)
        if handler is None and answer.intent in _ENDINGS:
            handler = self._handler(step, answer.intent)
            if handler is None:  # heard at every question: a polite ending of its own
                # a person must act on these: the committee is told (callbot.alerts)
                if answer.intent in ("human", "emergency"):
                    alert = Alert("human" if answer.intent == "human" else "needs_help",
                                  answer.intent == "emergency", answer.text)
                    out.append(alert)
                    self.alerts.append(alert)
                self._end(_ENDINGS[answer.intent], step.name, out)
                return
        if handler is None:
            self._retry(step, "no_match", out)
            return
        # check every value before recording any, so a refused quantity records nothing
        values: list[tuple[str, Any]] = []
        try:
            for name, value in handler.set.items():
                values.append((name, self.script.fields[name].coerce(value)))
            if handler.record:
                values.append((handler.record, self.script.fields[handler.record].coerce(answer.value)))
        except ValueError:
            invalid = self._handler(step, "invalid")
            self._retry(step, "invalid", out,
                        say=invalid.say if invalid and invalid.say else DEFAULT_SAY["invalid"])
            return
        if handler.note and spoken and answer.text.strip():
            previous = self.answers.get(handler.note)
            text = answer.text.strip()
            values.append((handler.note, f"{previous}；{text}" if previous else text))
        for name, value in values:
            self._record(name, value, out)
        if handler.transfer:
            self._start_transfer(step, handler, out)
            return
        if handler.say:
            self._say(handler.say, step.name, out)
        self.step = None
        self.listening = None
        if handler.next:
            self._goto(handler.next, out)
        else:
            self._end(handler.end or "completed", step.name, out)
