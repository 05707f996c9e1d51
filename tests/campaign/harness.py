"""Run a campaign the way production does: an in-process dispatcher thread and
``callbot worker`` subprocesses (the fake runner, or the real session)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from callbot.campaign.dispatcher import Dispatcher
from tests.campaign.conftest import Env
from tests.conftest import callbot_cmd, env_for_subprocess


@contextmanager
def running(env: Env, *, lines: int, runner: str | None = None, queue: str = "calls",
            interval: float = 0.1, dead_after_s: float = 10.0, extra_env: dict[str, str] | None = None
            ) -> Iterator[tuple[Dispatcher, subprocess.Popen[bytes]]]:
    """Dispatcher thread + ``callbot worker --lines N`` subprocess; stopped on exit."""
    args = ["worker", "--lines", str(lines), "--queue", queue]
    if runner:
        args += ["--runner", runner]
    log_path = env.settings.data_dir / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - closed below; read it when a test fails
    worker = subprocess.Popen(callbot_cmd("-v", *args),
                              env=env_for_subprocess(**env.env, PYTHONFAULTHANDLER="1", **(extra_env or {})),
                              start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    d = Dispatcher(env.factory(), env.redis(), queue_name=queue, dead_after_s=dead_after_s,
                   settings=env.settings)
    stop = threading.Event()
    t = threading.Thread(target=d.run, args=(stop, interval), daemon=True)
    t.start()
    try:
        yield d, worker
    finally:
        stop.set()
        t.join(10)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)
        log.close()


def wait_finished(factory: Any, cid: int, timeout: float,
                  during: Any = None) -> str:
    from callbot.campaign.models import Campaign
    from callbot.db import session_scope

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(factory) as s:
            state = s.get(Campaign, cid).state
        if state not in ("running", "paused"):
            return state
        if during is not None:
            during()
        time.sleep(0.2)
    raise AssertionError(f"campaign {cid} still {state} after {timeout}s")


def worker_pids(factory: Any) -> list[int]:
    """Pids of live line-worker processes, from their heartbeat rows."""
    from sqlalchemy import select

    from callbot.campaign.models import LineWorker
    from callbot.db import session_scope

    with session_scope(factory) as s:
        return list(s.scalars(select(LineWorker.pid).where(LineWorker.stopped_at.is_(None))))
