"""What a line process of ``callbot worker --lines N`` loads: the supervisor upgrades the
database once (``callbot db upgrade``), so its line processes never import Alembic and the
migrations (~13 MB each, 34 processes at 100 lines), and the host's store process does their
writes and reads the call queue for them, so they never import SQLAlchemy and the models
(~22 MB each) nor redis-py and RQ (~20 MB) either — on a database that
did not exist before the worker started, and the campaign still runs to exact final states."""

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


def test_line_processes_do_not_import_alembic_nor_sqlalchemy(tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
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
        assert "callbot.campaign.worker" in modules and "callbot.campaign.jobs" in modules
        assert not {m for m in modules
                    if m.split(".")[0] in ("alembic", "sqlalchemy", "redis", "rq")}, pid
        assert "callbot.campaign.models" not in modules, pid


_RENDER = """
import json, sys
from callbot.campaign.runner import line_tts
from callbot.config import load_settings
from callbot.speech.tts import make_tts
tts = line_tts(make_tts(load_settings()), shared_host=True)
path = tts.render(sys.argv[1])
print(json.dumps({"path": str(path), "modules": sorted(sys.modules)}))
"""


def test_a_prompt_missing_from_the_cache_is_rendered_without_loading_the_engines(
        data_dir: Path) -> None:
    """A line process next to the host's speech process renders a prompt the dispatcher did not
    render ahead (a new name: espeak reads it through pypinyin) in a child: the WAV lands in the
    cache, and the line process loads none of edge-tts, aiohttp, numpy or pypinyin, nor asyncio
    and ssl (5.4 MB RSS when ``callbot.speech.tts`` imported asyncio at its top)."""
    import subprocess
    import sys

    from callbot.speech.audio import check_prompt
    from tests.conftest import env_for_subprocess

    text = "您好，欧阳翠花阿姨，这里是社区居委会。"
    done = subprocess.run([sys.executable, "-c", _RENDER, text], capture_output=True, text=True,
                          timeout=300, env=env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir)))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    path = Path(got["path"])
    assert path.is_relative_to(data_dir) and check_prompt(path).duration_s > 1.0
    heavy = {m for m in got["modules"] if m.split(".")[0] in ("edge_tts", "aiohttp", "numpy",
                                                             "pypinyin", "asyncio", "ssl")}
    assert not heavy, sorted(heavy)[:10]


_MEMO_LOAD = """
import json, sys, tracemalloc
from callbot import pinyin
tracemalloc.start()
n = pinyin.load_memo(sys.argv[1])
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"n": n, "peak": peak, "pypinyin": "pypinyin" in sys.modules,
                  "readings": {t: [[list(s), c] for s, c in v] for t, v in pinyin._MEMO.items()}},
                 ensure_ascii=False))
"""


def test_a_line_process_loads_the_lexicon_readings_in_a_few_mb(tmp_path: Path) -> None:
    """The speech process writes the lexicon's readings (pinyin memo); every line process loads
    them instead of pypinyin. The same readings arrive, and loading them peaks at under 300 bytes
    of Python objects per (syllable, character) pair: measured 180 (5.6 MB for the lexicon's
    ~33,000 pairs); the nested-list JSON peaked at 600 (18.6 MB, 12.3 MB kept), which stayed in
    each line process's RSS: 18 MB of its 68."""
    import subprocess
    import sys

    from callbot import intents, pinyin
    from tests.conftest import env_for_subprocess

    intents.warm()
    memo = tmp_path / "pinyin-memo.json"
    pinyin.save_memo(memo)
    want = {t: [[list(s), c] for s, c in v] for t, v in pinyin._MEMO.items()}
    done = subprocess.run([sys.executable, "-c", _MEMO_LOAD, str(memo)], capture_output=True,
                          text=True, timeout=120, env=env_for_subprocess())
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["n"] == len(want) > 500 and not got["pypinyin"]
    assert got["readings"] == want
    pairs = sum(len(v) for v in want.values())
    assert got["peak"] < 300 * pairs, (got["peak"], pairs)
