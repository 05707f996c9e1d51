"""Campaign acceptance on real calls: line workers (pjsua2, TTS, KWS, dialogue) dial the resident
simulator over SIP on 127.0.0.1. Every contact must end in the state its persona dictates, the
report must match the population exactly, and nobody may be dialled more often than SQL says.

Combinations: 200 contacts on SQLite + a real Redis server and on PostgreSQL + the embedded Redis
(so each database and each Redis carries a full campaign); fewer contacts on SQLite + embedded
Redis flushed mid-run and on PostgreSQL + a real Redis server; kill -9 of line workers mid-call.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from callbot import reports
from callbot.campaign.models import Answer, Attempt, Campaign, Contact
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, redis_db_url, setup_campaign
from tests.campaign.harness import running, wait_finished
from tests.campaign.population import population, start_simulator, write_table

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow]
SCRIPT = str(Path(__file__).with_name("quick_mask.yaml"))


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()


def _simulator(tmp: Path, people, lines: int):  # type: ignore[no-untyped-def]
    return start_simulator(tmp, write_table(people, tmp / "personas.yaml"), lines)


def _run(tmp: Path, n: int, lines: int, db_url: str | None, redis_url: str | None,
         during=None, timeout: float = 600):  # type: ignore[no-untyped-def]
    people = population(n)
    sim, conf = _simulator(tmp, people, lines)
    try:
        env = make_env(tmp / "var", db_url, redis_url, CALLBOT_SIP_CONF=str(conf),
                       CALLBOT_TTS_ENGINE="espeak")
        factory = env.factory()
        nums = [p.number for p in people]
        cid = setup_campaign(factory, nums, lines=lines, script=SCRIPT,
                             policy={"delay_s": 1, "max_attempts": 3,
                                     "interrupted": {"delay_s": 15}})
        with running(env, lines=lines, queue=f"real-{os.getpid()}-{tmp.name}") as (_, worker):
            state = wait_finished(factory, cid, timeout,
                                  during=(lambda: during(env, factory, worker)) if during else None)
        assert state == "finished"
        time.sleep(1.0)  # the simulator logs a call when its side has ended
    finally:
        sim.stop()
    return people, factory, cid, tmp / "rec"


INFRA = ("interrupted", "unreachable", "failed")
"""Outcomes no persona produces: a line-worker or simulator process that crashed (pjsua2) or a
simulator at capacity. The retry policy absorbs them; the final results must not change."""


def _check_exact(people, factory, cid, rec: Path) -> None:  # type: ignore[no-untyped-def]
    from callbot.residents import read_call_log

    with session_scope(factory) as s:
        rows = {r["dial"]: r for r in reports.contact_rows(s, cid)}
        rep = reports.full_report(s, cid)
        attempts = s.scalars(select(Attempt).where(
            Attempt.campaign_id == cid, Attempt.state.in_(("finished", "interrupted")))).all()
    infra = Counter(a.phone for a in attempts if a.outcome in INFRA)
    dialled = Counter(a.phone for a in attempts)
    for p in people:
        r = rows[p.number]
        assert r["state"] == "done", p
        hit = infra.get("+86" + p.number, 0)
        ok = r["result"] == p.result and (r["attempts"] == p.attempts if not hit
                                          else r["attempts"] <= p.attempts + hit)
        if not ok:
            detail = [(a.number, a.outcome, a.sip_code, a.ended, a.error) for a in attempts
                      if a.contact_id == r["contact_id"]]
            raise AssertionError(f"{p}: got {r['result']}/{r['attempts']}: {detail}")
        if p.masks is not None:
            assert r["answers"].get("masks") == p.masks, (p, r["answers"])
            assert r["answers"].get("need_masks") == (p.masks > 0), (p, r["answers"])
    kinds = Counter(p.kind for p in people)
    completed = sum(1 for p in people if p.result == "completed")
    assert rep["contacts"] == len(people)
    assert rep["attempts"] == len(attempts)
    assert rep["answered_attempts"] == completed  # each answering resident finishes at once
    assert rep["reached_contacts"] == completed
    assert rep["connection_rate_contacts"] == round(completed / len(people), 4)
    assert rep["connection_rate_attempts"] == round(completed / len(attempts), 4)
    assert rep["completion_rate"] == round(completed / len(people), 4)
    assert rep["results"] == dict(Counter(p.result for p in people))
    assert rep["outcomes"].get("invalid_number", 0) == kinds["wrong_number"]
    assert rep["masks"]["total_masks"] == sum(p.masks or 0 for p in people)
    assert rep["masks"]["households"] == sum(1 for p in people if p.masks)
    assert rep["by_attempt"][1]["attempts"] == len(people)
    if not infra:
        assert rep["attempts"] == sum(p.attempts for p in people)
        # an unanswered attempt's own outcome depends on timing (a 486 that arrives after our
        # ring timeout reads as no_answer on a loaded machine); their sum may not
        unanswered = {k: v for k, v in rep["outcomes"].items()
                      if k not in ("answered", "invalid_number")}
        assert sum(unanswered.values()) == 3 * (kinds["busy"] + kinds["no_answer"]
                                                + kinds["reject"])
    # the simulator saw no call that SQL does not know, and none twice for one attempt
    heard = Counter("+86" + c["number"] for c in read_call_log(rec))
    for number, n in heard.items():
        assert n <= dialled[number], number


@pytest.mark.timeout(900)
def test_200_contacts_8_lines_sqlite_redis_server(tmp_path, redis_server_url) -> None:  # type: ignore[no-untyped-def]
    _check_exact(*_run(tmp_path, 200, 8, None, redis_db_url(redis_server_url, 8)))


def test_sqlite_embedded_redis_flushed_mid_campaign(tmp_path) -> None:  # type: ignore[no-untyped-def]
    flushed: list[Any] = []

    def flush(env, factory, worker) -> None:  # type: ignore[no-untyped-def]
        with session_scope(factory) as s:
            done = s.scalar(select(Attempt.id).where(Attempt.state == "finished").offset(8))
        if done and not flushed:
            env.redis().flushall()
            flushed.append(True)

    _check_exact(*_run(tmp_path, 24, 8, None, None, during=flush))
    assert flushed


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_200_contacts_8_lines_postgres_embedded_redis(tmp_path, pg_url) -> None:  # type: ignore[no-untyped-def]
    """The other half of the acceptance pair: PostgreSQL and the embedded Redis, 200 contacts."""
    _check_exact(*_run(tmp_path, 200, 8, pg_url, None))


@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_two_worker_hosts_and_a_web_host_postgres_redis_server(tmp_path, pg_url,
                                                               redis_server_url) -> None:  # type: ignore[no-untyped-def]
    """Many hosts: two line-worker "hosts" (their own data dirs, nothing shared on disk), the
    dispatcher, and a web host on a third data dir share one PostgreSQL and one Redis server.
    The campaign runs to the end with exact results; both hosts placed calls; the web host
    reads every call's recording and the prompts (rendered ahead by the dispatcher) from the
    shared stores, with an empty disk."""
    import subprocess

    from callbot.campaign.models import LineWorker
    from callbot.prompts import render_prompts
    from callbot.recordings import Recording, decode, open_store
    from callbot.script import load_script
    from callbot.speech.tts import PromptRenderer
    from tests.conftest import callbot_cmd, env_for_subprocess

    redis_url = redis_db_url(redis_server_url, 9)
    people = population(16)
    sim, conf = _simulator(tmp_path, people, 8)
    host_b = make_env(tmp_path / "host-b", pg_url, redis_url, CALLBOT_SIP_CONF=str(conf),
                      CALLBOT_TTS_ENGINE="espeak", CALLBOT_PRERENDER="1")
    try:
        env = make_env(tmp_path / "host-a", pg_url, redis_url, CALLBOT_SIP_CONF=str(conf),
                       CALLBOT_TTS_ENGINE="espeak", CALLBOT_PRERENDER="1")
        factory = env.factory()
        cid = setup_campaign(factory, [p.number for p in people], lines=8, script=SCRIPT,
                             policy={"delay_s": 1, "max_attempts": 3,
                                     "interrupted": {"delay_s": 15}})
        with session_scope(factory) as s:
            s.get(Campaign, cid).record_calls = True
        queue = f"hosts-{os.getpid()}"
        log = open(tmp_path / "host-b.log", "wb")  # noqa: SIM115
        b = subprocess.Popen(callbot_cmd("-v", "worker", "--lines", "4", "--queue", queue),
                             env=env_for_subprocess(**host_b.env), start_new_session=True,
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            with running(env, lines=4, queue=queue):
                assert wait_finished(factory, cid, 600) == "finished"
        finally:
            b.terminate()
            b.wait(60)
            log.close()
        time.sleep(1.0)
    finally:
        sim.stop()
    _check_exact(people, factory, cid, tmp_path / "rec")
    with session_scope(factory) as s:
        by_pid = {w.id: w.pid for w in s.scalars(select(LineWorker)).all()}
        used = {by_pid[str(a.worker_id)] for a in s.scalars(select(Attempt).where(
            Attempt.campaign_id == cid, Attempt.answered_at.is_not(None))).all()}
        answered = s.scalar(select(func.count()).select_from(Attempt).where(
            Attempt.campaign_id == cid, Attempt.answered_at.is_not(None)))
    assert len(by_pid) == 4 and len(used) >= 2  # calls went through both hosts' processes
    assert list((tmp_path / "host-b" / "cache" / "tts").rglob("*.wav"))  # host B's own cache
    # the web host: its own empty data dir, the same database and Redis
    web = make_env(tmp_path / "web-host", pg_url, redis_url)
    wfactory = web.factory()
    store = open_store(web.settings, wfactory)
    with session_scope(wfactory) as s:
        recs = s.scalars(select(Recording).where(Recording.campaign_id == cid,
                                                 Recording.kind == "call")).all()
        keys = [r.key for r in recs]
    assert len(keys) == answered
    for key in keys:
        pcm, rate = decode(store.get(key))
        assert rate == 8000 and len(pcm) > 16000  # over half a second of the call
    other = PromptRenderer([_NoRender()], tmp_path / "web-host" / "cache" / "tts",
                           shared=web.redis())
    with session_scope(wfactory) as s:
        from callbot.campaign.jobs import contact_variables

        contact = s.get(Contact, s.scalars(select(Attempt.contact_id).where(
            Attempt.campaign_id == cid)).first())
        assert contact is not None
        variables = contact_variables(contact)
    assert render_prompts(other, load_script(SCRIPT), variables,
                          committee=web.settings.committee) >= 3
    assert not list((tmp_path / "web-host").rglob("*.wav.tmp"))


class _NoRender:
    """The web host's TTS: every prompt must come from the shared cache."""

    name = "espeak"
    default_voice = "cmn-latn-pinyin"

    def synthesize(self, text: str, dst: Path, **kw: object) -> None:
        raise AssertionError(f"prompt not in the shared cache: {text}")


def test_kill_9_line_worker_mid_call(tmp_path, redis_server_url) -> None:  # type: ignore[no-untyped-def]
    """kill -9 a line-worker process while it has calls up, several times: interrupted attempts
    go through the retry policy, answers heard before the kill stay, a contact whose script
    finished is never dialled again, and the simulator saw no call that SQL does not know."""
    from callbot.residents import read_call_log

    kills: list[int] = []

    def killer(env, factory, worker) -> None:  # type: ignore[no-untyped-def]
        if len(kills) >= 2:
            return
        with session_scope(factory) as s:
            a = s.execute(select(Attempt.worker_id, Attempt.started_at).where(
                Attempt.state == "dialing").order_by(Attempt.started_at)).first()
            finished = s.scalar(select(Attempt.id).where(Attempt.state == "finished")
                                .offset(4 * (len(kills) + 1)))
        if a is None or finished is None:
            return
        pid = int(a.worker_id.split("-")[-2])
        if pid != worker.pid:  # a child of the supervisor: the supervisor restarts it
            try:
                os.kill(pid, signal.SIGKILL)
                kills.append(pid)
            except ProcessLookupError:
                pass

    people, factory, cid, rec = _run(tmp_path, 28, 8, None, redis_db_url(redis_server_url, 10),
                                     during=killer)
    assert len(kills) == 2
    with session_scope(factory) as s:
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)).all()
        rows = {r["dial"]: r for r in reports.contact_rows(s, cid)}
        for a in attempts:
            if a.completed:
                assert s.scalar(select(Answer.id).where(Answer.attempt_id == a.id))
    interrupted = [a for a in attempts if a.state == "interrupted"]
    assert interrupted
    by_target: dict[int, list[Attempt]] = {}
    for a in attempts:
        by_target.setdefault(a.target_id, []).append(a)
    for a in interrupted:
        later = [b for b in by_target[a.target_id] if b.number > a.number]
        if a.completed:  # killed during the goodbye: the dialogue's end was stored, no retry
            assert not later and a.outcome == "answered"
        else:
            assert later or a.number >= 3, "the policy retries an interrupted contact"
    for ats in by_target.values():
        done = [a for a in ats if a.completed]
        assert len(done) <= 1
        if done:
            assert max(a.number for a in ats if a.number) == done[0].number
    assert all(r["state"] == "done" for r in rows.values())
    for p in people:  # outcomes other than interrupted ones still follow the personas
        r = rows[p.number]
        assert r["result"] in (p.result, "unreachable")
    dialled = Counter(a.phone for a in attempts if a.state in ("finished", "interrupted"))
    heard = Counter("+86" + c["number"] for c in read_call_log(rec))
    for number, n in heard.items():
        assert n <= dialled[number], number  # no call without an attempt row
