"""Fast layer beside the real-SIP fault campaign (tests/campaign/test_fault_campaign.py): the
dispatcher's pause while the SIP peer is away, the give-back of a call the line never carried, a
slow line worker is not called dead, the probe against a real UDP SIP peer, and the database
retry (SQLite + embedded Redis, in-process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from callbot.campaign import service
from callbot.campaign.dispatcher import Dispatcher
from callbot.campaign.jobs import begin_dialing, give_back
from callbot.campaign.line import LineHealth, peer_answers
from callbot.campaign.models import Attempt, Campaign, LineWorker, Target, utcnow
from callbot.config import SipConfig
from callbot.db import retrying, session_scope
from tests.campaign.conftest import make_env, numbers, setup_campaign
from tests.conftest import free_port

NOW = datetime(2026, 3, 2, 2, 0)
REPO = Path(__file__).resolve().parents[2]
QUEUE = "inproc-fault"


@pytest.fixture
def env(tmp_path):  # type: ignore[no-untyped-def]
    return make_env(tmp_path / "var", None, None)


def _dispatcher(env) -> Dispatcher:  # type: ignore[no-untyped-def]
    return Dispatcher(env.factory(), env.redis(), clock=lambda: NOW, queue_name=QUEUE,
                      dead_after_s=5)


def _worker(env, wid: str, *, down: bool, lines: int = 3, **kw) -> None:  # type: ignore[no-untyped-def]
    with session_scope(env.factory()) as s:
        s.add(LineWorker(id=wid, host="h", pid=1, lines=lines, heartbeat_at=utcnow(),
                         line_down_since=utcnow() if down else None,
                         line_down_reason="SIP 对端 10.0.0.1:5060 无响应（2 秒内没有回应）"
                         if down else None, **kw))


def _campaign(env) -> Campaign:  # type: ignore[no-untyped-def]
    factory = env.factory()
    cid = setup_campaign(factory, numbers(4), lines=2)
    with session_scope(factory) as s:
        c = s.get(Campaign, cid)
        assert c is not None
        s.expunge(c)
    return c


def test_every_line_down_pauses_with_the_reason_and_resumes_by_itself(env) -> None:  # type: ignore[no-untyped-def]
    c = _campaign(env)
    d = _dispatcher(env)
    d.tick()  # two attempts queued
    _worker(env, "a", down=True)
    _worker(env, "b", down=False)
    assert d.check_lines() == []  # one line still reaches the peer: carry on
    with session_scope(env.factory()) as s:
        s.get(LineWorker, "b").line_down_since = utcnow()
    assert d.check_lines() == [(c.id, "paused")]
    with session_scope(env.factory()) as s:
        st = service.status(s, c.id)
        queued = s.scalar(select(Attempt.id).where(Attempt.state == "queued"))
    assert st.state == "paused"
    assert st.pause_reason is not None and st.pause_reason.startswith("线路中断，已自动暂停：SIP 对端")
    assert "自动继续" in st.pause_reason
    assert queued is None  # nobody waits in the queue for a line that cannot call
    assert d.tick().enqueued == 0
    with session_scope(env.factory()) as s:
        s.get(LineWorker, "a").line_down_since = None
    assert d.check_lines() == [(c.id, "resumed")]
    with session_scope(env.factory()) as s:
        st = service.status(s, c.id)
    assert (st.state, st.pause_reason) == ("running", None)


def test_a_pause_staff_chose_is_not_resumed_by_the_line(env) -> None:  # type: ignore[no-untyped-def]
    c = _campaign(env)
    _worker(env, "a", down=False)
    with session_scope(env.factory()) as s:
        service.pause(s, c.id)
    assert _dispatcher(env).check_lines() == []
    with session_scope(env.factory()) as s:
        assert service.status(s, c.id).state == "paused"


def test_busy_workers_cannot_tell_so_the_down_one_decides(env) -> None:  # type: ignore[no-untyped-def]
    """A worker whose every line is in a call never tries the peer: it does not keep a
    campaign running while the only worker that can dial finds the line down."""
    c = _campaign(env)
    d = _dispatcher(env)
    d.tick()
    _worker(env, "down", down=True)
    _worker(env, "busy", down=False, lines=2)
    with session_scope(env.factory()) as s:
        ids = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).all()
    for aid in ids:
        assert begin_dialing(env.factory(), aid, "busy", clock=lambda: NOW) is not None
    assert d.check_lines() == [(c.id, "paused")]


def test_a_call_the_line_never_carried_is_given_back(env) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    cid = setup_campaign(factory, numbers(1), lines=1)
    _dispatcher(env).tick()
    with session_scope(factory) as s:
        aid = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).one()
    assert begin_dialing(factory, aid, "w", clock=lambda: NOW) is not None
    give_back(factory, aid, "SIP 对端无响应", clock=lambda: NOW)
    with session_scope(factory) as s:
        a = s.get(Attempt, aid)
        t = s.get(Target, a.target_id)
        assert (a.state, a.outcome) == ("cancelled", "unreachable")
        assert a.error.startswith("线路中断")
        # not one of the resident's tries: she is called again when the line is back
        assert (t.state, t.attempts, t.result) == ("pending", 0, None)
    assert cid


def test_a_slow_worker_on_this_host_is_not_called_dead(env) -> None:  # type: ignore[no-untyped-def]
    """Its heartbeat is late but its process runs (a loaded box): its calls are up, and
    calling it dead re-dialled residents while they were still talking (seen in the fault
    campaign: two calls up at once to one number). Once the process is gone, it is dead."""
    factory = env.factory()
    setup_campaign(factory, numbers(1), lines=1)
    _dispatcher(env).tick()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                             "callbot", "worker"])
    try:
        with session_scope(factory) as s:
            s.add(LineWorker(id="slow", host=socket.gethostname(), pid=proc.pid, lines=1,
                             heartbeat_at=utcnow() - timedelta(minutes=5)))
            aid = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).one()
        assert begin_dialing(factory, aid, "slow", clock=lambda: NOW) is not None
        d = _dispatcher(env)
        assert d.reconcile_dead_workers() == 0
    finally:
        proc.kill()
        proc.wait(5)
    assert d.reconcile_dead_workers() == 1
    with session_scope(factory) as s:
        assert s.get(Attempt, aid).state == "interrupted"


def test_no_worker_is_called_dead_right_after_the_database_returns(env) -> None:  # type: ignore[no-untyped-def]
    """While the database was away nobody could write a heartbeat."""
    factory = env.factory()
    with session_scope(factory) as s:
        s.add(LineWorker(id="w", host="elsewhere", pid=1, lines=1,
                         heartbeat_at=utcnow() - timedelta(seconds=30)))
    d = _dispatcher(env)
    d._db_back_at = time.monotonic()
    assert d.reconcile_dead_workers() == 0
    with session_scope(factory) as s:
        assert s.get(LineWorker, "w").stopped_at is None
    d._db_back_at = time.monotonic() - 6
    d.reconcile_dead_workers()
    with session_scope(factory) as s:
        assert s.get(LineWorker, "w").stopped_at is not None


def _udp_sink() -> tuple[socket.socket, int]:
    """A UDP port that reads and drops everything (a peer that went silent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def test_probe_against_a_real_sip_peer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OPTIONS to a pjsua2 UA (the resident simulator) is answered; a port with nobody is
    refused at once; a peer that drops everything is a timeout. The reasons are Chinese, for
    the pause."""
    pytest.importorskip("pjsua2")
    from callbot.residents import Simulator

    table = tmp_path / "p.yaml"
    table.write_text("residents:\n- {number: '1', behaviour: busy}\n", encoding="utf-8")
    port = free_port()
    with Simulator(str(table), str(tmp_path / "rec"), port=port, procs=1):
        assert peer_answers(SipConfig(dial_uri=f"sip:{{number}}@127.0.0.1:{port}")) is None
    closed = SipConfig(dial_uri=f"sip:{{number}}@127.0.0.1:{free_port()}")
    assert "拒绝连接" in (peer_answers(closed) or "")
    sink, sink_port = _udp_sink()
    try:
        t = time.monotonic()
        why = peer_answers(SipConfig(dial_uri=f"sip:{{number}}@127.0.0.1:{sink_port}"),
                           timeout=0.5)
        assert why is not None and "无响应" in why and time.monotonic() - t < 2
        health = LineHealth(SipConfig(dial_uri=f"sip:{{number}}@127.0.0.1:{sink_port}"))
        assert health.check() is False  # the real default timeout: 2 s
        assert health.down and health.reason and "无响应" in health.reason
    finally:
        sink.close()


def test_retrying_waits_for_the_database() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return "stored"

    assert retrying(flaky, what="an answer", for_s=5, pause_s=0.01) == "stored"
    assert len(calls) == 3
    with pytest.raises(ValueError):  # a wrong statement is not retried
        retrying(lambda: (_ for _ in ()).throw(ValueError("bad")), what="x", for_s=5)
    with pytest.raises(OperationalError):
        retrying(lambda: (_ for _ in ()).throw(OperationalError("x", {}, Exception("down"))),
                 what="x", for_s=0.05, pause_s=0.01)


@pytest.mark.sip
def test_an_invite_given_up_on_is_not_sent_again() -> None:
    """The fault campaign's "second INVITE, CANCELled at once": a call whose INVITE got no
    response (the SIP peer away) is over for the robot after response_timeout, its attempt
    given back and the resident called again later — but pjsip went on retransmitting that
    INVITE for 32 s and sent a CANCEL once a provisional response came. A peer back in that
    time rang the resident's phone for a call the robot had given up on. After the give-up no
    INVITE may leave, and a late 180 draws no CANCEL (nothing is left to cancel)."""
    pytest.importorskip("pjsua2")
    from callbot.telephony import Phone

    peer, port = _udp_sink()
    peer.settimeout(0.1)
    got: list[tuple[float, bytes, tuple[str, int]]] = []

    def read_until(t_end: float) -> None:
        while time.monotonic() < t_end:
            try:
                data, addr = peer.recvfrom(65535)
            except TimeoutError:
                continue
            got.append((time.monotonic(), data, addr))

    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=1))
    phone.start()
    try:
        t0 = time.monotonic()
        call = phone.dial(f"sip:1001@127.0.0.1:{port}")
        read_until(t0 + 1.3)
        res = call.wait(5)
        ended = time.monotonic()
        assert res.outcome == "unreachable" and res.sip_code is None, res
        # pjsip's timer A would resend at 1.5 s and 3.5 s after the first INVITE
        read_until(t0 + 4.2)
        invites = [(t, d, a) for t, d, a in got if d.startswith(b"INVITE ")]
        assert invites and all(t < ended for t, _, _ in invites), [
            round(t - t0, 2) for t, _, _ in invites]
        # the peer comes back and answers the last INVITE it saw with 180 Ringing
        _, data, addr = invites[-1]
        keep = [ln for ln in data.split(b"\r\n")
                if ln.split(b":", 1)[0].strip().lower() in (b"via", b"from", b"to", b"call-id",
                                                           b"cseq")]
        keep = [ln + b";tag=back" if ln.lower().startswith(b"to:") else ln for ln in keep]
        peer.sendto(b"SIP/2.0 180 Ringing\r\n" + b"\r\n".join(keep)
                    + b"\r\nContent-Length: 0\r\n\r\n", addr)
        n = len(got)
        read_until(time.monotonic() + 1.0)
        assert not [d.split(b"\r\n", 1)[0] for _, d, _ in got[n:]
                    if d.startswith((b"CANCEL ", b"INVITE "))]
    finally:
        phone.stop()
        peer.close()


_CALLER = """
import json, sys, time
from callbot.config import SipConfig
from callbot.telephony import Phone
port, prefix, n, kill_me = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                        ring_timeout_s=10, response_timeout_s=5))
phone.start()
if not kill_me:  # dial when told: every robot of a burst is up by then
    print("ready", flush=True)
    sys.stdin.readline()
calls = [phone.dial(f"sip:{prefix}{i:04d}@127.0.0.1:{port}") for i in range(n)]
deadline = time.monotonic() + 15
while time.monotonic() < deadline and not all(c.answered or c.done for c in calls):
    time.sleep(0.05)
answered = [c.answered for c in calls]
if kill_me:  # stay on the line until the test SIGKILLs this robot
    print("up" if all(answered) else "not answered", flush=True)
    time.sleep(600)
print("placed", flush=True)  # hang up when told: every call of the burst was placed by then
sys.stdin.readline()
for c in calls:
    c.hangup()
print(json.dumps(["answered" if a else c.wait(10).outcome for a, c in zip(answered, calls)]))
phone.stop()
"""


def _caller(port: int, prefix: str, n: int, kill_me: bool = False) -> subprocess.Popen[str]:
    """A robot of its own (a pjsua2 process: at most 4 calls) dialling *n* residents."""
    return subprocess.Popen([sys.executable, "-c", _CALLER, str(port), prefix, str(n),
                             "1" if kill_me else "0"], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _dial_all(port: int, prefix: str, n: int) -> list[str]:
    """*n* calls at once from robots of 4 lines each: how each went (answered, busy, …). The
    robots dial together once all are up and hang up together once all have placed their calls:
    on a loaded box one robot's interpreter started seconds after another's, whose calls were
    over by then, and it found their lines free (5 of 6 answered on 4 free lines)."""
    import json

    robots = [_caller(port, f"{prefix}{k}", min(4, n - k * 4)) for k in range(-(-n // 4))]

    def step(word: str) -> None:
        for r in robots:
            line = r.stdout.readline().strip()  # type: ignore[union-attr]
            assert line == word, (word, line)

    try:
        step("ready")
        for r in robots:
            r.stdin.write("dial\n")  # type: ignore[union-attr]
            r.stdin.flush()  # type: ignore[union-attr]
        step("placed")
        out: list[str] = []
        for r in robots:
            text, _ = r.communicate("hangup\n", timeout=60)
            out += json.loads(text.strip().splitlines()[-1])
        return out
    finally:
        for r in robots:
            if r.poll() is None:
                r.kill()
                r.wait(10)


@pytest.mark.sip
@pytest.mark.timeout(180)
def test_a_robot_killed_mid_call_leaves_the_residents_reachable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The fault campaign's lost answers: a line worker SIGKILLed with calls up. The resident
    simulator hangs those calls up, but its pjsua2 keeps each one for 32 s (its BYE to the dead
    robot goes unanswered) while the simulator counted the line free: the next INVITEs it sent
    there were refused (486, before any resident saw them) and never counted back, so that
    backend looked busy for good; soon every retry got 503 at once, each contact's tries were
    used up in seconds and the residents ended unreachable, the answers they had given in the
    killed call lost. Now the simulator counts the calls its pjsua2 still holds and forgets
    INVITEs refused by a full backend: a resident is never refused by a backend's pjsua2, and
    once the dead calls are gone the simulator answers as many calls as it has lines again."""
    pytest.importorskip("pjsua2")
    from callbot.residents import Simulator, read_call_log

    table = tmp_path / "p.yaml"
    table.write_text("default: {behaviour: answer}\nresidents: []\n", encoding="utf-8")
    port = free_port()
    rec = tmp_path / "rec"
    with Simulator(str(table), str(rec), port=port, procs=2) as sim:  # 8 lines
        robot = _caller(port, "1390", 4, kill_me=True)
        try:
            assert robot.stdout is not None and robot.stdout.readline().strip() == "up"
        finally:
            robot.kill()  # SIGKILL with four calls up: no BYE
            robot.wait(10)
        gone = read_call_log(rec, wait_for=4, timeout=20)
        assert len(gone) == 4 and all(c["caller_gone"] for c in gone), gone
        time.sleep(1.5)  # the simulator has given up on their BYEs: pjsua2 still holds them
        now = _dial_all(port, "1391", 6)
        # four lines are free: those calls are answered, the others told "all busy" by the
        # simulator's front (503: unreachable), never refused by a full backend (486: busy)
        assert sorted(now) == ["answered"] * 4 + ["unreachable"] * 2, now
        deadline = time.monotonic() + 40  # pjsip gives up on the unanswered BYEs (32 s)
        while time.monotonic() < deadline and any(sim._lingering[i] for i in range(sim.procs)):
            time.sleep(0.5)
        time.sleep(1.0)
        later = _dial_all(port, "1392", sim.capacity)
        assert later == ["answered"] * sim.capacity, later
