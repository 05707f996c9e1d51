"""The host's store process (``callbot.campaign.store_service``): the line processes of a
supervisor write through it. SIGKILLed mid-call it is started again by the supervisor, the
calls' writes wait for it, and the campaign ends with exact states: no answer lost or stored
twice, nobody dialled twice. A request sent again after its answer was lost (the store died
after the commit) writes nothing twice and gives a claim back only to the line that made it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callbot.campaign import linestore
from callbot.campaign.models import Answer, Attempt, Contact, Target
from callbot.db import session_scope
from tests.campaign.conftest import make_env, numbers, redis_db_url, setup_campaign
from tests.campaign.fakes import expected
from tests.campaign.harness import running, wait_finished

FAKE = "tests.campaign.fakes:fake_runner"
pytestmark = pytest.mark.slow


def _store_pids(supervisor: int) -> list[int]:
    """Pids of the store processes *supervisor* started (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == supervisor and b"callbot.campaign.store_service" in cmd:
            out.append(int(d.name))
    return out


def test_store_process_sigkilled_mid_call(tmp_path, redis_server_url) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tmp_path / "var", None, redis_db_url(redis_server_url, 7))
    factory = env.factory()
    nums = numbers(30)
    cid = setup_campaign(factory, nums, lines=6)
    log = tmp_path / "dials.log"
    kills: list[int] = []
    holder: list[Any] = []

    def killer() -> None:
        dialled = len(log.read_text().splitlines()) if log.exists() else 0
        if len(kills) >= 3 or dialled < 6 * (len(kills) + 1):
            return
        with session_scope(factory) as s:
            if s.scalar(select(Attempt.id).where(Attempt.state == "dialing")) is None:
                return  # mid-call only
        pids = _store_pids(holder[0].pid)
        if len(pids) == 1:
            os.kill(pids[0], signal.SIGKILL)
            kills.append(pids[0])

    with running(env, lines=6, runner=FAKE, queue=f"q-store-kill-{os.getpid()}",
                 extra_env={"CALLBOT_FAKE_DIAL_LOG": str(log), "CALLBOT_FAKE_CALL_S": "0.4"}) \
            as (_, worker):
        holder.append(worker)
        deadline = time.monotonic() + 60
        while not _store_pids(worker.pid):
            assert worker.poll() is None and time.monotonic() < deadline, \
                (env.settings.data_dir / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
        assert wait_finished(factory, cid, 240, during=killer) == "finished", \
            (env.settings.data_dir / "worker.log").read_text()[-3000:]
        assert len(_store_pids(worker.pid)) == 1  # the supervisor started it again
    assert len(kills) == 3 and len(set(kills)) == 3
    with session_scope(factory) as s:
        rows = s.execute(select(Contact.dial, Target.state, Target.result, Target.attempts)
                         .join(Target, Target.contact_id == Contact.id)
                         .where(Target.campaign_id == cid)).all()
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)).all()
        answers = Counter((a, f) for a, f in s.execute(
            select(Answer.attempt_id, Answer.field).where(Answer.campaign_id == cid)))
    assert all(state == "done" for _, state, _, _ in rows)
    # the writes waited for the store: every contact ends as the population says
    assert {d: (r, n) for d, _, r, n in rows} == {n: expected(n) for n in nums}
    assert not [a for a in attempts if a.state in ("dialing", "queued")]
    dialled = [int(x.split()[0]) for x in log.read_text().splitlines() if x.strip()]
    assert len(dialled) == len(set(dialled))  # each attempt dialled once
    assert sorted(dialled) == sorted(a.id for a in attempts if a.state == "finished")
    # each answered attempt stored each answer exactly once (none lost, none twice)
    for a in attempts:
        if a.outcome == "answered":
            assert answers[(a.id, "masks")] == 1 and answers[(a.id, "need_masks")] == 1, a.id
    assert all(n == 1 for n in answers.values())


@pytest.fixture
def store(tmp_path, redis_server_url):  # type: ignore[no-untyped-def]
    from tests.conftest import env_for_subprocess

    env = make_env(tmp_path / "var", None, redis_db_url(redis_server_url, 8))
    env.factory()  # the schema, as the supervisor's `callbot db upgrade` makes it
    address = linestore.address_for(env.settings.data_dir, os.getpid())
    proc = subprocess.Popen([sys.executable, "-m", "callbot.campaign.store_service"],
                            env=env_for_subprocess(**env.env,
                                                   CALLBOT_STORE_SOCKET="@" + address[1:]))
    deadline = time.monotonic() + 60
    while True:
        try:
            linestore.ping(address)
            break
        except (OSError, ValueError):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    try:
        yield address, env
    finally:
        proc.terminate()
        proc.wait(20)


def _queued_attempt(env: Any, queue: str) -> tuple[int, int]:
    """A one-resident campaign's id and its attempt, queued by one dispatcher tick."""
    from callbot.campaign.dispatcher import Dispatcher

    factory = env.factory()
    cid = setup_campaign(factory, numbers(1), lines=1)
    Dispatcher(factory, env.redis(), queue_name=f"{queue}-{os.getpid()}").tick()
    with session_scope(factory) as s:
        aid = s.scalar(select(Attempt.id).where(Attempt.campaign_id == cid,
                                                Attempt.state == "queued"))
    assert aid is not None
    return cid, aid


def test_a_request_sent_again_writes_once(store) -> None:  # type: ignore[no-untyped-def]
    address, env = store
    factory = env.factory()
    cid, aid = _queued_attempt(env, "q-again")
    job = linestore.call(address, "begin_dialing", {"attempt_id": aid, "worker_id": "w1",
                                                    "committee": None})
    assert job is not None and job["attempt_id"] == aid
    # its answer lost: the same line sends it again and gets its claim back; nobody else does
    again = linestore.call(address, "begin_dialing", {"attempt_id": aid, "worker_id": "w1",
                                                      "committee": None}, retry=1)
    assert again == job
    assert linestore.call(address, "begin_dialing", {"attempt_id": aid, "worker_id": "w2",
                                                     "committee": None}, retry=1) is None
    assert linestore.call(address, "begin_dialing", {"attempt_id": aid, "worker_id": "w1",
                                                     "committee": None}) is None
    heard = {"attempt_id": aid, "campaign_id": cid, "contact_id": job["contact_id"],
             "records": [["masks", 3, None]], "alerts": []}
    linestore.call(address, "heard", heard)
    linestore.call(address, "heard", heard, retry=1)  # the first one committed: not again
    with session_scope(factory) as s:
        assert s.scalars(select(Answer.value).where(Answer.attempt_id == aid)).all() == [3]
        assert s.get(Attempt, aid).state == "dialing"  # type: ignore[union-attr]
    # a bad request is an error for the caller, not a dead store
    with pytest.raises(Exception, match="store process failed"):
        linestore.call(address, "finish", {"attempt_id": aid})
    assert linestore.ping(address) == "store"


def _as_other_user(address: str, request: bytes) -> bytes:
    """What the store at *address* answers *request* from a process of another user (uid 65534,
    nobody): a forked child drops root, connects and reads until the store closes."""
    import socket

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(address)
                got = b""
                try:
                    s.sendall(request)
                    while chunk := s.recv(4096):
                        got += chunk
                # closed with the request unread (or before it was all sent): refused too
                except (ConnectionResetError, BrokenPipeError):
                    pass
            os.write(w, got or b"<closed>")
        except BaseException as exc:  # noqa: BLE001 - said to the parent, which fails on it
            os.write(w, f"<child failed: {exc!r}>".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_another_users_process_cannot_write_through_the_store(store) -> None:  # type: ignore[no-untyped-def]
    """The store listens on an abstract Unix socket, which has no file permissions: without a
    check any local user could claim attempts, write answers or put numbers on the do-not-call
    list. A connection from another uid gets no answer and changes nothing; the line's own
    request, sent the same way, is served."""
    import json

    if os.getuid() != 0:
        pytest.skip("needs root to run a process as another user (CI runs as root)")
    address, env = store
    factory = env.factory()
    _cid, aid = _queued_attempt(env, "q-peer")
    req = json.dumps({"op": "begin_dialing", "args": {"attempt_id": aid, "worker_id": "intruder",
                                                      "committee": None}}).encode() + b"\n"
    assert _as_other_user(address, req) == b"<closed>"
    with session_scope(factory) as s:
        assert s.get(Attempt, aid).state == "queued"  # type: ignore[union-attr]
    job = linestore.call(address, "begin_dialing", {"attempt_id": aid, "worker_id": "w1",
                                                    "committee": None})
    assert job is not None and job["attempt_id"] == aid


def test_idle_lines_of_a_process_read_the_queue_one_at_a_time(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each idle line asked the store for a job every second (100 idle lines: ~100 one-second
    reads a second); the lines of one process now take turns, and when jobs come every line
    still gets one at once."""
    import threading

    from callbot.campaign.dispatcher import Dispatcher

    address, env = store
    queue = f"q-turns-{os.getpid()}"
    rq = linestore.RpcQueue(linestore.RpcStore(address), queue)
    reads: list[float] = []
    real = linestore.call

    def counted(addr: str, op: str, args: dict[str, Any], **kw: Any) -> Any:
        if op == "take":
            reads.append(time.monotonic())
        return real(addr, op, args, **kw)

    monkeypatch.setattr(linestore, "call", counted)
    taken: list[linestore.Taken] = []

    def line(until: float, one: bool) -> None:
        while time.monotonic() < until:
            got = rq.take(1)
            if got is not None:
                taken.append(got)
                if one:
                    return

    def lines(seconds: float, one: bool) -> None:
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=line, args=(until, one)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 35)

    lines(3.0, one=False)  # three idle lines, 3 s: one read at a time (9 before)
    assert taken == [] and 2 <= len(reads) <= 5, reads
    factory = env.factory()
    setup_campaign(factory, numbers(3), lines=3)
    Dispatcher(factory, env.redis(), queue_name=queue).tick()
    t0 = time.monotonic()
    lines(5.0, one=True)
    assert len({t.jid for t in taken}) == 3  # every line got its own job …
    assert time.monotonic() - t0 < 3.0  # … at once, not one a second each


def test_a_burst_of_line_processes_is_answered_without_refused_connections(store) -> None:  # type: ignore[no-untyped-def]
    """100 lines' requests at once (34 line processes starting: heartbeats and queue reads) are
    all answered on their first try: with socketserver's backlog of 5 most connections were
    refused (EAGAIN) and each line waited 0.5–1 s to send again."""
    import threading

    address, _ = store
    refused: list[str] = []
    answered: list[int] = []

    def line() -> None:
        for _ in range(5):
            try:
                linestore.call(address, "hello", {}, timeout_s=30.0)
                answered.append(1)
            except OSError as exc:
                refused.append(type(exc).__name__)

    threads = [threading.Thread(target=line) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert refused == [] and len(answered) == 500
