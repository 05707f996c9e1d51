"""'Call me back later' by voice: the new synthesized clips (我现在没空 / 等会儿再打 / 我在忙) through
the real KWS model at the built-ins' questions, each listening for exactly the phrases the engine
asks for, end the dialogue ``callback`` with the answers heard before kept."""

from __future__ import annotations

import pytest

from tests.dialogue.conftest import talk

pytestmark = [pytest.mark.speech]

BUSY = ["woxianzaimeikong", "denghuierzaida", "wozaimang"]


@pytest.mark.parametrize("busy", BUSY)
@pytest.mark.parametrize(("before", "answers"), [
    ([], {}),
    (["xuyao"], {"need_masks": True}),
    (["xuyao", "liangge"], {"need_masks": True, "masks": 2}),
])
def test_mask_reservation_busy_by_voice(kws, busy, before, answers) -> None:  # noqa: F811
    engine = talk(kws, "mask_reservation", [*before, busy])
    assert engine.ended == "callback", engine.transcript
    assert engine.answers == answers
    heard = [t["text"] for t in engine.transcript if t["role"] == "callee"]
    assert len(heard) == len(before) + 1  # understood at the first try, no "没听清"


@pytest.mark.parametrize("busy", BUSY)
@pytest.mark.parametrize(("before", "answers"), [([], {}), (["wohenhao"], {"welfare": "ok"})])
def test_welfare_check_busy_by_voice(kws, busy, before, answers) -> None:  # noqa: F811
    engine = talk(kws, "welfare_check", [*before, busy])
    assert engine.ended == "callback", engine.transcript
    assert engine.answers == answers
