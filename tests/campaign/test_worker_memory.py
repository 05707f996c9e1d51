"""What a line process of ``callbot worker --lines N`` loads: the supervisor upgrades the
database once (``callbot db upgrade``), so its line processes never import Alembic and the
migrations (~13 MB each, 34 processes at 100 lines) — on a database that did not exist before
the worker started, and the campaign still runs to exact final states."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from callbot.campaign.models import LineWorker, Target
from callbot.campaign.store import open_db
from callbot.db import session_scope
from tests.campaign.conftest import make_env, numbers, setup_campaign
from tests.campaign.fakes import expected
from tests.campaign.harness import running, wait_finished

PROBE = "tests.campaign.fakes:probe_runner"
pytestmark = pytest.mark.slow


def _live_workers(url: str) -> int:
    """Line-worker rows of a database the test must not migrate itself (0 while it has no
    tables yet)."""
    from callbot.campaign.store import engine_for
    from callbot.config import load_settings
    from callbot.db import make_sessionmaker

    engine = engine_for(load_settings({"DATABASE_URL": url}))
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            return len(s.scalars(select(LineWorker.id).where(LineWorker.stopped_at.is_(None)))
                       .all())
    except Exception:  # noqa: BLE001 - no tables yet
        return 0
    finally:
        engine.dispose()


def test_line_processes_do_not_import_alembic(tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    probe = tmp_path / "probe"
    probe.mkdir()
    env = make_env(tmp_path / "var", None, None)
    url = env.settings.database_url
    assert not Path(url.removeprefix("sqlite:///")).exists()  # the worker meets no schema
    queue = f"q-{request.node.name}-{os.getpid()}"
    with running(env, lines=6, runner=PROBE, queue=queue,
                 extra_env={"CALLBOT_PROBE_DIR": str(probe), "CALLBOT_FAKE_CALL_S": "0.05"}) \
            as (_, worker):
        deadline = time.monotonic() + 120
        while _live_workers(url) < 2:  # two line processes of 3 lines, on the fresh schema
            assert worker.poll() is None, (env.settings.data_dir / "worker.log").read_text()
            assert time.monotonic() < deadline, (env.settings.data_dir / "worker.log").read_text()
            time.sleep(0.2)
        factory = open_db(env.settings)
        nums = numbers(24)
        cid = setup_campaign(factory, nums, lines=6)
        assert wait_finished(factory, cid, 120) == "finished"
    with session_scope(factory) as s:
        got = {t.contact.dial: (t.result, t.attempts)
               for t in s.scalars(select(Target).where(Target.campaign_id == cid))}
    assert got == {n: expected(n) for n in nums}
    loaded = {p.stem: set(json.loads(p.read_text())) for p in probe.glob("*.json")}
    assert len(loaded) == 2, loaded.keys()  # both line processes placed calls
    for pid, modules in loaded.items():
        assert "callbot.campaign.worker" in modules and "sqlalchemy" in modules
        assert not {m for m in modules if m.split(".")[0] == "alembic"}, pid
