"""The SIP code → outcome mapping other parts rely on."""

from __future__ import annotations

import json

import pytest

from callbot.telephony.outcome import CallResult, classify


@pytest.mark.parametrize(("code", "kw", "outcome"), [
    (200, {"answered": True}, "answered"),
    (486, {}, "busy"),
    (600, {}, "busy"),
    (603, {}, "rejected"),
    (403, {"ringing": True}, "rejected"),
    (403, {}, "failed"),
    (404, {}, "invalid_number"),
    (484, {}, "invalid_number"),
    (604, {}, "invalid_number"),
    (480, {}, "unreachable"),
    (503, {}, "unreachable"),
    (408, {}, "unreachable"),
    (None, {}, "unreachable"),
    (502, {"transport_error": True}, "unreachable"),
    (487, {"ring_timeout": True}, "no_answer"),
    (487, {}, "failed"),
    (500, {}, "failed"),
    (488, {"ringing": True}, "failed"),
])
def test_mapping(code, kw, outcome) -> None:
    kw.setdefault("answered", False)
    assert classify(code, **kw) == outcome


def test_to_json_has_exactly_the_public_fields() -> None:
    r = CallResult(number="13800000001", uri="sip:13800000001@x", outcome="busy", sip_code=486,
                   reason="Busy Here", ring_s=0.5)
    d = r.to_json()
    assert list(d) == ["number", "outcome", "sip_code", "reason", "hangup_by", "ring_s",
                       "talk_s", "dtmf", "announcement"]
    assert json.loads(json.dumps(d)) == d
