"""Alert fixtures: a stand-in group robot, an installation, a line runner that types replies into
the real dialogue engine and hands each reply's answers and alerts over as a call does."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from callbot.campaign.jobs import CallJob, CallOutcome, OnEnd, OnRecord
from tests.alerts.robot import GroupRobot
from tests.campaign.conftest import Env, make_env


@pytest.fixture
def robot() -> Iterator[GroupRobot]:
    with GroupRobot() as r:
        yield r


@pytest.fixture
def env(tmp_path: Path, robot: GroupRobot) -> Env:
    return make_env(tmp_path / "var", None, None, CALLBOT_ALERT_WEBHOOK=robot.url,
                    CALLBOT_PUBLIC_URL="http://callbot.example:8000")


def typed_runner(plan: Mapping[str, Sequence[str]]) -> Any:
    """Answers with the real dialogue engine, the resident typing *plan[dial]* (or
    ``"no_answer"``); each reply's Records and Alerts go to ``on_heard`` together."""
    from callbot.dialogue import Alert, DialogueEngine, HangUp, Record, typed_events
    from callbot.script import load_script

    def run(job: CallJob, on_record: OnRecord, *, on_end: OnEnd | None = None,
            on_heard: Any = None, **_: Any) -> CallOutcome:
        replies = plan[job.dial]
        if replies == "no_answer":
            return CallOutcome(outcome="no_answer", sip_code=487)
        engine = DialogueEngine(load_script(job.script), job.variables, committee="幸福里居委会")
        engine.start()
        for reply in replies:
            for ev in typed_events(reply):
                acts = engine.on(ev)
                on_heard([a for a in acts if isinstance(a, Record)],
                         [a for a in acts if isinstance(a, Alert)])
                for a in acts:
                    if isinstance(a, HangUp) and on_end is not None:
                        on_end(a.reason)
            if engine.ended:
                break
        return CallOutcome(outcome="answered", completed=engine.ended == "completed",
                           sip_code=200, talk_s=10.0, ended=engine.ended,
                           transcript=engine.transcript, answers=dict(engine.answers))

    return run
