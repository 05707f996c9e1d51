"""转人工: putting a resident through to the committee's duty phone.

The dialogue asks for it (a template answer with ``transfer: true``); once the robot's short line
has played, the session hands the call to a :class:`TransferLeg`, which either

- **bridges** (default): dials the duty phone from the same line-worker process (the process keeps
  a call slot free for it, ``TRANSFER_SPARE_LEGS``), and when it answers joins the two calls on
  pjsua2's conference bridge; the line stays busy until one side hangs up; or
- **refers** (``[calls] transfer = refer`` in sip.conf, for a PBX that takes it): sends SIP REFER
  and lets the PBX connect the resident; our leg ends once the PBX reports the duty phone answered.

A duty phone that does not answer within the timeout (or no duty phone configured, or no call
slot free in time) gives ``TransferResult(answered=False)``: the dialogue then tells the resident
someone will call back and raises an urgent alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callbot import defaults
from callbot.dialogue import TransferResult
from callbot.exceptions import DialError, TooManyCallsError

log = logging.getLogger("callbot.transfer")

SLOT_RETRY_S = 0.2
"""How often a transfer waiting for a free call slot tries again (seconds)."""


@dataclass(frozen=True)
class TransferPlan:
    """Where a call's transfer goes: the committee's duty phone and how long it may ring."""

    to: str | None
    """A number (dialled through sip.conf's dial pattern) or a SIP URI; None: none configured."""
    timeout_s: float = defaults.TRANSFER_TIMEOUT_S
    method: str = "bridge"
    """bridge or refer (sip.conf ``[calls] transfer``)."""
    max_s: float = defaults.TRANSFER_MAX_S


@dataclass
class TransferRecord:
    """What the attempt keeps: to whom, answered or not, ring and talk time, why it failed."""

    to: str
    method: str
    answered: bool = False
    ring_s: float | None = None
    talk_s: float | None = None
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"to": self.to, "method": self.method, "answered": self.answered,
                "ring_s": self.ring_s, "talk_s": self.talk_s, "reason": self.reason}


DRY_RUN_DUTY = ("answers", "no-answer")
"""How a dry run's duty phone behaves (``callbot simulate --duty``, 试一试's 转人工时 menu)."""


class DryRunTransfer:
    """转人工 in a dry run (``callbot simulate``, the web's 试一试): nothing is dialled; the duty
    phone answers, or not, as *duty* says (``answers`` / ``no-answer``). Pass each batch of the
    engine's actions through the object: after a :class:`~callbot.dialogue.Transfer` it feeds the
    engine the result a real call would give and returns the actions that follow too.

    *plan* is ``{"to": duty number or None, "timeout_s": ...}``; :attr:`transfer` is what the
    dry run shows of the last transfer (the plan, the robot's last line before it, answered), or
    None when the dialogue asked for none."""

    def __init__(self, engine: Any, plan: dict[str, Any], duty: str = "answers"):
        if duty not in DRY_RUN_DUTY:
            raise ValueError(f"duty must be one of {DRY_RUN_DUTY}, not {duty!r}")
        self.engine = engine
        self.plan = plan
        self.duty = duty
        self.transfer: dict[str, Any] | None = None

    def __call__(self, acts: list[Any]) -> list[Any]:
        from callbot.dialogue import Say, Transfer

        if not any(isinstance(a, Transfer) for a in acts):
            return acts
        says = [a.text for a in acts if isinstance(a, Say)]
        answered = self.duty == "answers" and bool(self.plan["to"])
        self.transfer = {**self.plan, "say": says[-1] if says else "", "answered": answered}
        return acts + self.engine.on(TransferResult(answered, self.plan["to"] or ""))


class TransferLeg:
    """One transfer of one call (the session's thread drives it through :meth:`poll`)."""

    def __init__(self, phone: Any, call: Any, plan: TransferPlan,
                 clock: Callable[[], float] = time.monotonic):
        self.phone = phone
        self.call = call
        self.plan = plan
        self.clock = clock
        self.record = TransferRecord(to=plan.to or "", method=plan.method)
        self.state = "idle"
        """idle → dialing | referring → bridged → done; or → done (failed)."""
        self.duty: Any = None
        self._t0 = 0.0
        self._deadline = 0.0
        self._result: TransferResult | None = None
        self._answered_at: float | None = None

    @property
    def bridged(self) -> bool:
        return self.state == "bridged"

    @property
    def active(self) -> bool:
        return self.state not in ("idle", "done")

    def start(self) -> TransferResult | None:
        """Begin (after the robot's line played); a result at once when it cannot even start."""
        self._t0 = self.clock()
        self._deadline = self._t0 + self.plan.timeout_s
        if not self.plan.to:
            return self._fail("没有配置值班电话 (no duty number)")
        if self.plan.method == "refer":
            self.state = "referring"
            try:
                self.call.refer(self.plan.to)
            except DialError as exc:
                return self._fail(str(exc))
            self._deadline += 5.0  # the PBX's own ringing comes on top
            return None
        self.state = "dialing"
        return self.poll()

    def poll(self) -> TransferResult | None:
        """Move on; returns the TransferResult once (when the duty phone answered or did not)."""
        now = self.clock()
        if self.state == "dialing":
            if self.duty is None:
                if now >= self._deadline:
                    return self._fail("没有空闲线路 (no call slot free for the duty phone)")
                try:
                    self.duty = self.phone.dial(
                        self.plan.to, ring_timeout=max(1.0, self._deadline - now),
                        max_call_s=self.plan.max_s, on_frame=_drop)
                except TooManyCallsError:
                    return None  # wait for a slot (the process keeps one, but may share it)
                except DialError as exc:
                    return self._fail(str(exc))
                return None
            if self.duty.answered:
                if not self.call.bridge(self.duty):
                    self.duty.hangup()
                    return self._fail("接通后无法桥接 (could not join the calls)")
                self.state = "bridged"
                self._answered_at = now
                self.record.answered = True
                self.record.ring_s = round(now - self._t0, 2)
                # the duty leg's own max_call_s (plan.max_s) caps the conversation; the resident's
                # leg must not end it sooner at the robot's max_call_length
                self.call.extend(self.plan.max_s + 24 * 3600)
                self._result = TransferResult(True, self.plan.to or "")
                return self._result
            if self.duty.done:
                r = self.duty.result
                return self._fail(f"值班电话未接通 ({getattr(r, 'outcome', '')} "
                                  f"{getattr(r, 'sip_code', '') or ''})".strip())
            return None
        if self.state == "bridged" and self.duty is not None and self.duty.done:
            self._finish_bridge()
            self.call.hangup()  # the duty phone hung up: the conversation is over
        if self.state == "referring" and now > self._deadline:
            return self._fail("PBX 没有完成转接 (no final NOTIFY to the REFER)")
        return None

    def on_status(self, code: int, reason: str, final: bool) -> TransferResult | None:
        """A NOTIFY about our REFER (``TransferStatus``)."""
        if self.state != "referring":
            return None
        if 200 <= code < 300:
            self.state = "done"
            self.record.answered = True
            self.record.ring_s = round(self.clock() - self._t0, 2)
            self._result = TransferResult(True, self.plan.to or "")
            return self._result
        if code >= 300 or final:
            return self._fail(f"REFER {code} {reason}".strip())
        return None

    def end(self) -> None:
        """The resident's call is over: hang up the duty phone and close the record."""
        if self.duty is not None and not self.duty.done:
            self.duty.hangup()
            try:
                self.duty.wait(5)
            except TimeoutError:
                log.warning("duty-phone leg did not end within 5 s of the resident's")
        if self.state == "bridged":
            self._finish_bridge()
        elif self.state in ("dialing", "referring"):
            self.state = "done"
            self.record.reason = self.record.reason or "居民已挂断 (the resident hung up first)"

    def _finish_bridge(self) -> None:
        self.state = "done"
        r = self.duty.result if self.duty is not None else None
        talk = getattr(r, "talk_s", None)
        if talk is None and self._answered_at is not None:
            talk = self.clock() - self._answered_at
        self.record.talk_s = round(float(talk), 2) if talk is not None else None

    def _fail(self, reason: str) -> TransferResult:
        log.warning("transfer to %s failed: %s", self.plan.to, reason)
        self.state = "done"
        self.record.reason = reason
        self.record.ring_s = round(self.clock() - self._t0, 2)
        self._result = TransferResult(False, self.plan.to or "")
        return self._result


def _drop(_pcm: bytes) -> None:
    """The duty phone's frames are not listened to (they go to the resident over the bridge)."""

