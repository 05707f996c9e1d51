"""Line-worker processes die with their supervisor: ``kill -9`` of ``callbot worker --lines 6``
(a supervisor, its speech and store processes and two line processes) leaves no process behind — before,
the children lived on with PPID 1, holding their phones, models and queue reads."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.campaign.conftest import make_env, need_real_call_parts, redis_db_url
from tests.conftest import REPO, SHARED, callbot_cmd, env_for_subprocess

pytestmark = [pytest.mark.sip, pytest.mark.speech]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True)
    return [int(x) for x in out.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["SIGKILL"])  # (SIGTERM: every campaign test stops its worker so)
def test_children_die_with_the_supervisor(tmp_path: Path, redis_server_url: str, how: str) -> None:
    need_real_call_parts()
    models = SHARED / "models"
    env = make_env(tmp_path / "var", None, redis_db_url(redis_server_url, 7),
                   CALLBOT_SIP_CONF=str(REPO / "sip.conf"),
                   **({"CALLBOT_MODELS_DIR": str(models)} if models.is_dir() else {}))
    sup = subprocess.Popen(callbot_cmd("worker", "--lines", "6"), env=env_for_subprocess(**env.env),
                           start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(kids) < 4:  # speech, store + 2 line processes
            assert sup.poll() is None, "the supervisor exited"
            kids = _children(sup.pid)
            time.sleep(0.5)
        assert len(kids) == 4, kids
        time.sleep(3)  # the line processes are up (phone, queue reads)
        os.kill(sup.pid, getattr(signal, how))
        sup.wait(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.2)
        left = [k for k in kids if _alive(k)]
        assert not left, f"processes left after {how} of the supervisor: {left}"
    finally:
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)
        if sup.poll() is None:
            sup.kill()
            sup.wait()
