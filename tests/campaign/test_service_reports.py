"""Campaign actions, do-not-call, daily caps, reports and exports, the CLI, and migrations —
in-process with the fast fake runner (the real calls are in test_real_calls.py)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime, timedelta

import openpyxl
import pytest
from sqlalchemy import select

from callbot import reports
from callbot.campaign import service
from callbot.campaign.dispatcher import Dispatcher
from callbot.campaign.jobs import LineContext, run_attempt
from callbot.campaign.lists import save_list
from callbot.campaign.models import Attempt, Target
from callbot.contacts import parse_contacts
from callbot.db import session_scope
from callbot.exceptions import CampaignError
from tests.campaign.conftest import make_env, numbers, setup_campaign
from tests.campaign.fakes import expected, fake_runner
from tests.conftest import callbot_cmd, env_for_subprocess

NOON = datetime(2026, 3, 2, 4, 0)  # 12:00 in Shanghai: between the default windows
MORNING = datetime(2026, 3, 2, 2, 0)  # 10:00 in Shanghai


def _drain(env, cid: int, clock=lambda: MORNING, rounds: int = 20) -> None:  # type: ignore[no-untyped-def]
    """Dispatch and run every queued attempt in-process until nothing is due."""
    factory, redis = env.factory(), env.redis()
    d = Dispatcher(factory, redis, clock=clock, queue_name="inproc")
    ctx = LineContext(factory=factory, runner=fake_runner(None, 1), worker_id="t", clock=clock)
    for _ in range(rounds):
        d.tick()
        with session_scope(factory) as s:
            queued = s.scalars(select(Attempt.id).where(Attempt.state == "queued")).all()
        if not queued:
            break
        for aid in queued:
            run_attempt(ctx, aid)
    redis.delete("rq:queue:inproc")


@pytest.fixture
def env(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CALLBOT_FAKE_CALL_S", "0")
    return make_env(tmp_path / "var", None, None)


def test_lifecycle_and_reports(env) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    nums = numbers(20)
    cid = setup_campaign(factory, nums, lines=5, windows="09:00-11:30,14:00-20:00", start=False)
    with session_scope(factory) as s:
        with pytest.raises(CampaignError):
            service.pause(s, cid)  # a draft cannot pause
        service.start(s, cid)
    _drain(env, cid, clock=lambda: NOON)  # window closed: nobody is called
    with session_scope(factory) as s:
        assert s.scalar(select(Attempt.id)) is None
    _drain(env, cid)
    with session_scope(factory) as s:
        st = service.status(s, cid)
        assert st.state == "finished" and st.done == 20
        rep = reports.full_report(s, cid)
    want = {n: expected(n) for n in nums}
    attempts = sum(a for _, a in want.values())
    completed = sum(1 for r, _ in want.values() if r == "completed")
    answered = completed  # fake residents who answer finish the script
    assert rep["contacts"] == 20 and rep["attempts"] == attempts
    assert rep["answered_attempts"] == answered and rep["reached_contacts"] == completed
    assert rep["connection_rate_attempts"] == round(answered / attempts, 4)
    assert rep["connection_rate_contacts"] == round(completed / 20, 4)
    assert rep["completion_rate"] == round(completed / 20, 4)
    assert rep["outcomes"]["busy"] == 6 and rep["outcomes"]["invalid_number"] == 2
    assert rep["by_attempt"][1]["attempts"] == 20
    assert set(rep["by_hour"]) == {"10"}
    m = rep["masks"]
    masks = {n: (int(n[-1]) if n[-1] != "8" else 2) for n in nums if n[-1] in "012348"}
    assert m["total_masks"] == sum(masks.values())
    assert m["households"] == sum(1 for v in masks.values() if v)
    assert m["declined"] == sum(1 for v in masks.values() if not v)
    assert sum(b["masks"] for b in m["per_building"].values()) == m["total_masks"]


def test_pause_resume_cancel_and_dnc(env) -> None:  # type: ignore[no-untyped-def]
    factory, redis = env.factory(), env.redis()
    nums = numbers(10)
    cid = setup_campaign(factory, nums, lines=3)
    d = Dispatcher(factory, redis, clock=lambda: MORNING, queue_name="inproc")
    assert d.tick().enqueued == 3
    with session_scope(factory) as s:
        service.pause(s, cid)
        states = s.scalars(select(Attempt.state)).all()
        assert set(states) == {"cancelled"}
        assert s.scalar(select(Target.id).where(Target.state == "active")) is None
    assert d.tick().enqueued == 0
    with session_scope(factory) as s:
        service.add_do_not_call(s, "+86 " + nums[0])
        service.resume(s, cid)
    d.tick()
    with session_scope(factory) as s:
        t = s.scalars(select(Target).join(Target.contact)).all()
        dnc = [x for x in t if x.contact.dial == nums[0]][0]
        assert (dnc.state, dnc.result) == ("done", "dnc")
        assert not s.scalar(select(Attempt.id).where(Attempt.phone == "+86" + nums[0],
                                                     Attempt.state != "cancelled"))
        service.cancel(s, cid)
        st = service.status(s, cid)
    assert st.state == "cancelled" and st.done == 10
    assert st.results["cancelled"] == 9 and st.results["dnc"] == 1
    redis.delete("rq:queue:inproc")


def test_daily_cap_moves_contact_to_tomorrow(env) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    cid = setup_campaign(factory, ["13800000005"], lines=1,
                         windows="09:00-11:30,14:00-20:00",
                         policy={"delay_s": 0, "max_attempts": 9})  # 5 = always busy
    with session_scope(factory) as s:
        s.get(service.Campaign, cid).daily_cap = 2
    clock = [MORNING]
    _drain(env, cid, clock=lambda: clock[0])
    with session_scope(factory) as s:
        t = s.scalar(select(Target))
        assert t.attempts == 2 and t.state == "pending"
        assert t.next_at == datetime(2026, 3, 3, 1, 0)  # tomorrow 09:00 Shanghai
    clock[0] = datetime(2026, 3, 3, 1, 0, 1)
    _drain(env, cid, clock=lambda: clock[0], rounds=1)
    with session_scope(factory) as s:
        assert s.scalar(select(Target)).attempts == 3


def test_exports_are_formula_safe(env) -> None:  # type: ignore[no-untyped-def]
    factory = env.factory()
    data = ("姓名,电话,地址,说明\n=HYPERLINK(\"http://x\"),13800000001,@SUM(A1),+1\n"
            "-2,13800000002,3号楼101,正常\n").encode()
    with session_scope(factory) as s:
        save_list(s, "evil", parse_contacts(data, "e.csv"))
        c = service.create_campaign(s, "evil", "evil", "mask_reservation", windows="00:00-24:00")
        service.start(s, c.id)
        cid = c.id
    _drain(env, cid)
    with session_scope(factory) as s:
        raw = reports.export_csv(s, cid)
        xlsx = reports.export_xlsx(s, cid)
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    cells = [c for r in rows[1:] for c in r]
    assert "'=HYPERLINK(\"http://x\")" in cells and "'@SUM(A1)" in cells and "'+1" in cells
    assert "'-2" in cells
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    wb = openpyxl.load_workbook(io.BytesIO(xlsx))
    assert set(wb.sheetnames) >= {"明细", "汇总", "口罩"}
    for ws in wb.worksheets:
        for row in ws.iter_rows(values_only=True):
            for v in row:
                assert not (isinstance(v, str) and v.startswith(("=", "+", "@"))), v
    assert wb["明细"].cell(2, 3).value == "13800000001"


def test_cli_campaign_and_report_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tmp_path / "var", None, None)
    e = env_for_subprocess(**env.env)
    f = tmp_path / "r.csv"
    f.write_text("姓名,电话,地址\n甲,13800000001,1号楼\n乙,13800000005,2号楼\n", encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(callbot_cmd(*args), capture_output=True, text=True, env=e)

    assert run("import", str(f), "--list", "L").returncode == 0
    r = run("campaign", "create", "C", "--list", "L", "--script", "mask_reservation",
            "--lines", "2", "--retry-delay", "0", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "draft"
    assert run("campaign", "start", "C").returncode == 0
    bad = run("campaign", "resume", "C")
    assert bad.returncode != 0 and "无法继续" in bad.stderr
    _drain(env, 1, clock=lambda: MORNING if False else datetime(2026, 3, 2, 2, 0))
    r = run("report", "C", "--json", "--export", str(tmp_path / "out.xlsx"))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("contacts", "attempts", "answered_attempts", "reached_contacts",
                "connection_rate_attempts", "connection_rate_contacts", "completion_rate",
                "outcomes"):
        assert key in rep
    assert rep["contacts"] == 2 and rep["answered_attempts"] == 1 and rep["attempts"] == 4
    assert rep["connection_rate_attempts"] == 0.25 and rep["connection_rate_contacts"] == 0.5
    assert (tmp_path / "out.xlsx").stat().st_size > 0
    text = run("report", "C").stdout
    assert "接通率（按呼叫）25.0%" in text and "接通率（按人）50.0%" in text


def test_migrations_cover_every_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`callbot db upgrade` on a fresh SQLite file creates every table on Base.metadata, and
    the models have not drifted from the migrations."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, inspect

    from callbot.campaign.store import load_models
    from callbot.db import Base

    env = make_env(tmp_path / "var", None, None)
    r = subprocess.run(callbot_cmd("db", "upgrade"), capture_output=True, text=True,
                       env=env_for_subprocess(**env.env))
    assert r.returncode == 0, r.stderr
    load_models()
    engine = create_engine(env.settings.database_url)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff


@pytest.mark.postgres
def test_migrations_on_postgres(pg_url) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import inspect

    from callbot.campaign.store import database_url, load_models, open_db
    from callbot.config import load_settings
    from callbot.db import Base

    factory = open_db(load_settings({"DATABASE_URL": pg_url, "CALLBOT_DATA_DIR": "/tmp"}))
    load_models()
    with factory() as s:
        names = set(inspect(s.get_bind()).get_table_names())
    assert set(Base.metadata.tables) <= names
    assert database_url(pg_url).startswith("postgresql")


def test_windows_next_open_after_close() -> None:
    from callbot.campaign.policy import Windows

    w = Windows.parse("09:00-11:30")
    assert w.next_open(NOON) == datetime(2026, 3, 3, 1, 0)
    assert w.next_open(MORNING) == MORNING
    assert w.next_open(MORNING - timedelta(hours=2)) == datetime(2026, 3, 2, 1, 0)


def test_second_dispatcher_stands_by(env) -> None:  # type: ignore[no-untyped-def]
    factory, redis = env.factory(), env.redis()
    a = Dispatcher(factory, redis, queue_name="lock-q")
    b = Dispatcher(factory, redis, queue_name="lock-q")
    assert a._lead(0.5) and not b._lead(0.5) and a._lead(0.5)
    redis.flushall()  # a lost Redis loses the lock too: the next one to ask leads
    assert b._lead(0.5) and not a._lead(0.5)


def test_by_hour_in_campaign_time_on_each_database(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Attempts bucketed by the hour they started, in the campaign's zone (Asia/Shanghai), with
    answered counts: the SQL bucket differs per database, the report must not."""
    env = make_env(tmp_path / "var", db_url, None)
    factory = env.factory()
    nums = numbers(4)
    cid = setup_campaign(factory, nums, start=False)
    starts = [datetime(2026, 3, 2, 1, 5), datetime(2026, 3, 2, 1, 59, 59, 900000),  # 09:xx
              datetime(2026, 3, 2, 2, 0), datetime(2026, 3, 2, 12, 30)]  # 10:00, 20:30
    with session_scope(factory) as s:
        targets = s.scalars(select(Target).where(Target.campaign_id == cid)
                            .order_by(Target.id)).all()
        for i, (t, start) in enumerate(zip(targets, starts, strict=True)):
            s.add(Attempt(campaign_id=cid, target_id=t.id, contact_id=t.contact_id,
                          phone="+86" + nums[i], number=1, state="finished",
                          outcome="answered" if i % 2 == 0 else "busy", completed=False,
                          queued_at=start, started_at=start, ended_at=start + timedelta(seconds=30),
                          talk_seconds=20.0 if i % 2 == 0 else None))
    with session_scope(factory) as s:
        rep = reports.summary(s, cid)
    assert rep["by_hour"] == {"09": {"attempts": 2, "answered": 1},
                              "10": {"attempts": 1, "answered": 1},
                              "20": {"attempts": 1, "answered": 0}}
