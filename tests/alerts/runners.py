"""A line-worker runner for ``callbot worker --runner tests.alerts.runners:welfare_runner``: the
real dialogue engine answered by typed replies (no SIP), so a campaign's alerts flow through real
worker processes, SQL and the dispatcher quickly. A number ending in an odd digit says she is not
well; the others are fine."""

from __future__ import annotations

import os
import time
from typing import Any

from callbot.campaign.jobs import CallRunner
from tests.alerts.conftest import typed_runner


class _Plan(dict[str, list[str] | str]):
    def __missing__(self, dial: str) -> list[str]:
        time.sleep(float(os.environ.get("CALLBOT_FAKE_CALL_S", "0.2")))
        return ["不太好，头晕"] if int(dial[-1]) % 2 else ["挺好的", "不需要"]


def welfare_runner(settings: Any, lines: int) -> CallRunner:
    return typed_runner(_Plan())  # type: ignore[no-any-return]
