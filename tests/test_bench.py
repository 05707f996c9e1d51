"""Every bench script and every Python script in scripts/ starts: ``--help`` prints its usage and
exits 0 (a bench is run by hand, rarely, so an import that rotted would otherwise be found only
then). The bodies are checked by mypy (tests/test_lint.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from tests.conftest import REPO

SCRIPTS = sorted(p for p in [*(REPO / "bench").glob("*.py"), *(REPO / "scripts").glob("*.py")]
                 if not p.name.startswith("_"))  # scripts/_zhtts.py is a module, not a script


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS


def test_every_bench_and_script_prints_its_help() -> None:
    # all at once: each is an interpreter start plus its imports (~1 s), the box has 2 CPUs
    procs = {p: subprocess.Popen([sys.executable, str(p), "--help"], cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for p in SCRIPTS}
    failed = []
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0 or "usage:" not in out:
            failed.append(f"{path.relative_to(REPO)}: rc {proc.returncode}\n{out[-500:]}{err[-1500:]}")
    assert not failed, "\n".join(failed)


def test_capacity_counts_each_calls_lost_frames() -> None:
    """bench/capacity.py's "frames lost": a call that got two frames more than its talk time
    (its audio began a moment before pjsua reported the answer) does not hide three frames
    another call lost — the old sum of differences printed −102 on a quiet box."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("capacity", REPO / "bench" / "capacity.py")
    assert spec is not None and spec.loader is not None
    capacity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)
    timings = [{"outcome": "answered", "talk_s": 10.0, "frames": 502},
               {"outcome": "answered", "talk_s": 10.0, "frames": 497},
               {"outcome": "no_answer", "talk_s": 0.0, "frames": 0}]
    assert capacity.frames_lost(timings) == (3, 1000)


def test_capacity_heartbeats_at_the_workers_default() -> None:
    """bench/capacity.py runs the line workers at their own heartbeat interval (it set 2 s, an
    SQL write per line process 2.5× as often as a user's worker) and says so in its output;
    ``--heartbeat`` asks for another."""
    import importlib.util

    from callbot import defaults

    spec = importlib.util.spec_from_file_location("capacity", REPO / "bench" / "capacity.py")
    assert spec is not None and spec.loader is not None
    capacity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)
    env, note = capacity.heartbeat_env(None)
    assert env == {}
    assert note == f"heartbeat {defaults.WORKER_HEARTBEAT_S:g} s (default)"
    env, note = capacity.heartbeat_env(2.0)
    assert env == {"CALLBOT_HEARTBEAT_S": "2"} and "--heartbeat" in note


def test_capacity_media_port_leaves_rtcp_and_video_ports_free() -> None:
    """SIPp's ``-mp`` port p takes p … p+3 (audio RTP/RTCP, video RTP/RTCP); the bench picked p
    as one free port, so p+2 taken by another run made SIPp exit at start. The pick skips a
    port whose p+2 is taken."""
    import importlib.util
    import socket

    spec = importlib.util.spec_from_file_location("capacity", REPO / "bench" / "capacity.py")
    assert spec is not None and spec.loader is not None
    capacity: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    busy = taken.getsockname()[1]
    offers = iter([busy - 2, busy - 2, 0])
    real = capacity._free_port
    capacity._free_port = lambda *a: next(offers) or real()
    try:
        port = capacity.free_media_port()
    finally:
        capacity._free_port = real
        taken.close()
    assert port != busy - 2 and port % 2 == 0
    for p in range(port, port + 4):  # all four free now
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", p))


def test_capacity_names_the_hosts_store_process() -> None:
    """The line workers' store process (callbot.campaign.store_service) is counted as "store"
    in the CPU split by process, not lumped with anything else as "other"."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("capacity", REPO / "bench" / "capacity.py")
    assert spec is not None and spec.loader is not None
    capacity: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capacity)
    py = "/venv/bin/python"
    assert capacity._role([py, "-m", "callbot.campaign.store_service"]) == "store"
    assert capacity._role([py, "-m", "callbot.speech.service"]) == "speech"
    assert capacity._role([py, "-m", "callbot", "worker", "--lines", "3", "--runner", "x"]) == "line"
