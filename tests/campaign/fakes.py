"""A fast fake call runner for queue tests (beside, never instead of, the real-call tests).

The last digit of the dialled number picks the behaviour; see ``EXPECTED``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from callbot.campaign.jobs import CallJob, CallOutcome, OnEnd, OnRecord


def behaviour(dial: str, attempt: int) -> str:
    d = int(dial[-1])
    if d <= 4:
        return "answer"
    return {5: "busy", 6: "no_answer", 7: "invalid_number", 8: "answer" if attempt >= 2
            else "no_answer", 9: "rejected"}[d]


def expected(dial: str, max_attempts: int = 3) -> tuple[str, int]:
    """(final result, attempts) the campaign must end with for this number."""
    d = int(dial[-1])
    if d <= 4:
        return "completed", 1
    if d == 7:
        return "invalid_number", 1
    if d == 8:
        return "completed", 2
    return "unreachable", max_attempts


def fake_runner(settings: Any, lines: int) -> Any:
    delay = float(os.environ.get("CALLBOT_FAKE_CALL_S", "0.05"))
    log = os.environ.get("CALLBOT_FAKE_DIAL_LOG")

    def run(job: CallJob, on_record: OnRecord, *, on_end: OnEnd | None = None,
            **_: Any) -> CallOutcome:
        if log:
            with open(log, "a") as f:
                f.write(f"{job.attempt_id} {job.dial}\n")
        b = behaviour(job.dial, job.number)
        time.sleep(delay)
        if b != "answer":
            return CallOutcome(outcome=b, sip_code={"busy": 486, "rejected": 603,
                                                   "invalid_number": 404}.get(b, 487))
        n = int(job.dial[-1]) if job.dial[-1] != "8" else 2
        on_record("need_masks", n > 0)
        time.sleep(delay)
        on_record("masks", n)
        if on_end is not None:
            on_end("completed")  # as a real call does before its goodbye
        return CallOutcome(outcome="answered", completed=True, sip_code=200, talk_s=2 * delay)

    return run


def probe_runner(settings: Any, lines: int) -> Any:
    """``fake_runner`` that writes the modules its line process has loaded, after each call, to
    ``$CALLBOT_PROBE_DIR/<pid>.json`` (what a real running line process holds in memory)."""
    import json
    import sys
    from pathlib import Path

    inner = fake_runner(settings, lines)
    out = Path(os.environ["CALLBOT_PROBE_DIR"]) / f"{os.getpid()}.json"

    def run(job: CallJob, on_record: OnRecord, **kw: Any) -> CallOutcome:
        result = inner(job, on_record, **kw)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(sys.modules)))
        tmp.replace(out)
        return result

    return run
