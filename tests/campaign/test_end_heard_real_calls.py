"""Killed while the goodbye plays: real line workers (pjsua2, TTS, KWS, dialogue) call the
resident simulator; three residents decide (1 = 需要, 9 = 不要再打了, 8 = 现在没空), and the
line worker that has their calls up is SIGKILLed while the goodbye plays, after the dialogue's
end and before hang-up. Nobody is called a second time: the completed resident is completed,
the one who said stop is on the do-not-call list, the call-back request waits for its own rule
(an hour), not the 1-second retry of an interrupted call.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from callbot.campaign.models import Answer, Attempt, Contact, DoNotCall, Target
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running
from tests.campaign.population import start_simulator

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]
SCRIPT = str(Path(__file__).with_name("end_goodbye.yaml"))
RESIDENTS = {"13900001001": ("dtmf:1", "need"), "13900001009": ("dtmf:9", "stop"),
             "13900001008": ("dtmf:8", "later")}


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()


def _table(path: Path) -> Path:
    rows = [{"number": n, "name": f"居民{n[-1]}", "behaviour": "answer", "replies": [key]}
            for n, (key, _) in RESIDENTS.items()]
    path.write_text(yaml.safe_dump({"default": {"behaviour": "busy"}, "residents": rows},
                                   allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.timeout(300)
def test_worker_killed_during_goodbye_dials_nobody_again(tmp_path, redis_server_url) -> None:  # type: ignore[no-untyped-def]
    from tests.campaign.conftest import redis_db_url

    lines = 5  # a supervisor over two line-worker processes: it restarts the one we kill
    sim, conf = start_simulator(tmp_path, _table(tmp_path / "personas.yaml"), lines)
    killed: set[int] = set()
    try:
        env = make_env(tmp_path / "var", None, redis_db_url(redis_server_url, 11),
                       CALLBOT_SIP_CONF=str(conf), CALLBOT_TTS_ENGINE="espeak")
        factory = env.factory()
        cid = setup_campaign(factory, list(RESIDENTS), lines=lines, script=SCRIPT,
                             policy={"delay_s": 1, "max_attempts": 3,
                                     "callback": {"delay_s": 3600}})
        with running(env, lines=lines, queue=f"goodbye-{os.getpid()}", dead_after_s=3) as (_, w):
            # every resident has decided (the answer is stored) and the calls are still up:
            # the goodbye (~8 s, not interruptible) is playing
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                with session_scope(factory) as s:
                    up = s.execute(select(Attempt.id, Attempt.worker_id).join(
                        Answer, Answer.attempt_id == Attempt.id).where(
                        Attempt.campaign_id == cid, Attempt.state == "dialing",
                        Answer.field == "wish")).all()
                if len(up) == len(RESIDENTS):
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the residents never all reached their decision")
            time.sleep(1.0)  # well inside the goodbye
            with session_scope(factory) as s:
                at_kill = s.execute(select(Attempt.state, Attempt.completed, Attempt.ended)
                                    .where(Attempt.campaign_id == cid)).all()
            for pid in {int(wid.split("-")[-2]) for _, wid in up}:
                assert pid != w.pid  # a child of the supervisor, never the supervisor
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            # the reconciler finds the dead worker (3 s); a retry would be placed 1 s later
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with session_scope(factory) as s:
                    active = s.scalar(select(Target.id).where(
                        Target.campaign_id == cid, Target.state == "active"))
                if active is None:
                    break
                time.sleep(0.2)
            time.sleep(8)  # time for a wrong re-dial to be queued, claimed and placed
            with session_scope(factory) as s:
                attempts = s.execute(select(Contact.dial, Attempt.state, Attempt.outcome,
                                            Attempt.completed, Attempt.ended)
                                     .join(Contact, Contact.id == Attempt.contact_id)
                                     .where(Attempt.campaign_id == cid)).all()
                targets = {d: (st, r, nxt) for d, st, r, nxt in s.execute(
                    select(Contact.dial, Target.state, Target.result, Target.next_at)
                    .join(Contact, Contact.id == Target.contact_id)
                    .where(Target.campaign_id == cid)).all()}
                answers: dict[str, Any] = dict(s.execute(select(Contact.dial, Answer.value).join(
                    Contact, Contact.id == Answer.contact_id).where(
                    Answer.campaign_id == cid, Answer.field == "wish")).all())
                dnc = set(s.scalars(select(DoNotCall.phone)))
    finally:
        sim.stop()
    assert killed
    # one call each: nobody dialled again
    assert Counter(d for d, *_ in attempts) == {n: 1 for n in RESIDENTS}, attempts
    # at the kill the end was already stored, while the call was still up
    assert sorted((st, c, e) for st, c, e in at_kill) == sorted(
        [("dialing", True, "completed"), ("dialing", False, "stop"),
         ("dialing", False, "callback")]), at_kill
    assert all(st == "interrupted" and out == "answered" for _, st, out, _, _ in attempts)
    assert answers == {n: want for n, (_, want) in RESIDENTS.items()}
    assert targets["13900001001"][:2] == ("done", "completed")
    assert targets["13900001009"][:2] == ("done", "dnc")
    assert "+8613900001009" in dnc
    st, result, nxt = targets["13900001008"]
    assert (st, result) == ("pending", None)
    assert nxt is not None  # due in an hour by the callback rule, not in 1 s
