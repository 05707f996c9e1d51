"""Call outcomes: the SIP code → outcome mapping other parts rely on, and :class:`CallResult`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

OUTCOMES = ("answered", "no_answer", "busy", "rejected", "invalid_number", "unreachable", "failed",
            "powered_off", "suspended", "assistant")
"""Every outcome a call can end with. ``powered_off``, ``suspended`` and ``assistant`` (and the
announcement readings of ``invalid_number`` / ``unreachable`` / ``busy``) are decided by what the
line said (:mod:`callbot.announcements`), not by a SIP code."""

_BUSY = {486, 600}
_INVALID = {404, 484, 604}
_UNREACHABLE = {480, 503, 408}

TRUNK_FAILURE_CODES = frozenset({408, 500, 502, 503, 504})
"""Final codes that speak of the robot's own line, not of the resident: the trunk or proxy is
overloaded or broken (500 Server Internal Error, 502 Bad Gateway, 503 Service Unavailable,
504 Server Time-out) or timed out toward the next hop (408). Told by a carrier announcement
instead (无法接通 then 503), the announcement decides."""


def trunk_failure(sip_code: int | None, *, answered: bool = False,
                  announcement: str | None = None) -> bool:
    """A call that ended on a trunk-side failure (:data:`TRUNK_FAILURE_CODES`) before any answer
    and with no announcement: it never reached the resident, so it must not use one of her
    tries (the campaign backs off instead)."""
    return not answered and not announcement and sip_code in TRUNK_FAILURE_CODES


def classify(sip_code: int | None, *, answered: bool, ring_timeout: bool = False,
             ringing: bool = False, transport_error: bool = False) -> str:
    """Outcome of a call from its final SIP code and what we saw.

    486/600 → busy; 603, and 403 after ringing → rejected; 404/484/604 → invalid_number;
    480/503/408, no response and transport errors → unreachable; our own ring timeout
    (CANCEL → 487) → no_answer; anything else → failed.
    """
    if answered:
        return "answered"
    if transport_error or not sip_code:
        return "unreachable"
    if ring_timeout and sip_code == 487:
        return "no_answer"
    if sip_code in _BUSY:
        return "busy"
    if sip_code == 603 or (sip_code == 403 and ringing):
        return "rejected"
    if sip_code in _INVALID:
        return "invalid_number"
    if sip_code in _UNREACHABLE:
        return "unreachable"
    return "failed"


@dataclass
class CallResult:
    """What happened on one call. ``to_json()`` is the stable public shape."""

    number: str
    """What was dialled: the phone number, or the SIP URI when a URI was given."""
    uri: str
    """The SIP URI the INVITE went to."""
    outcome: str
    sip_code: int | None
    """Final SIP status (200 for an answered call); None when nothing answered at all."""
    reason: str
    hangup_by: str | None = None
    """'robot' or 'callee' for an answered call; None when it was never answered."""
    ring_s: float = 0.0
    """Seconds from sending the INVITE to the answer (or to the end when unanswered)."""
    talk_s: float = 0.0
    """Seconds from the answer to the hang-up."""
    dtmf: str = ""
    """Keys the other side pressed, in order."""
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    announcement: str | None = None
    """What a carrier announcement or voice assistant said (it decided ``outcome``), or None."""

    def to_json(self) -> dict[str, Any]:
        """The public JSON object (a dict): number, outcome, sip_code, reason, hangup_by, ring_s,
        talk_s, dtmf, announcement."""
        d = asdict(self)
        return {k: d[k] for k in ("number", "outcome", "sip_code", "reason", "hangup_by",
                                  "ring_s", "talk_s", "dtmf", "announcement")}

    def heard(self, outcome: str, text: str) -> None:
        """An announcement decided this call: it wins over the SIP code (and over an answer)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        self.extra.setdefault("sip_outcome", self.outcome)
        self.outcome = outcome
        self.announcement = text
