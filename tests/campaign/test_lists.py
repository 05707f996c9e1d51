"""The bulk paths, on SQLite and PostgreSQL: a 10,000-row XLSX import stores exactly the good
rows (PostgreSQL: COPY) and reports every bad one by row number; one dispatch of many attempts
writes exactly the right ``queued`` rows (PostgreSQL: INSERT … SELECT FROM unnest) before
their RQ jobs, in due order, skipping do-not-call and busy numbers."""

from __future__ import annotations

import io
import uuid

import openpyxl
from sqlalchemy import select

from callbot.campaign import service
from callbot.campaign.dispatcher import JOB_FUNC, Dispatcher, job_id
from callbot.campaign.lists import save_list
from callbot.campaign.models import Attempt, Contact, Target
from callbot.contacts import parse_contacts
from callbot.db import session_scope
from tests.campaign.conftest import make_env, numbers, setup_campaign

# cells that would break a naive COPY/CSV stream: tab, newlines, backslashes, the end-of-data
# marker on a line of its own, NULL's spelling, quotes
NASTY = ["a\tb", "第一行\n第二行", "C:\\居委\\名单", "x\n\\.\ny", "\\N", '"引号", 逗号', "\\.",
         "回\r\n车"]


def _big_xlsx(n: int) -> tuple[bytes, set[int], dict[int, int]]:
    """n data rows (write-only workbook: no <dimension>); returns the bytes, the rows with a bad
    phone and {duplicate row: first row}."""
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("居民")
    ws.append(["姓名", "手机", "地址", "楼层", "备注"])
    bad: set[int] = set()
    dups: dict[int, int] = {}
    for i in range(n):
        row = i + 2
        phone = f"139{i:08d}"
        if i % 1000 == 7:
            phone = "12345"
            bad.add(row)
        elif i % 997 == 500:
            phone = f"139-{i - 400:08d}"  # same number as 400 rows earlier, other spelling
            dups[row] = row - 400
        ws.append([f"居民{i}", phone, f"{i % 40 + 1}号楼{i % 300 + 101}室", i % 30,
                   NASTY[i % len(NASTY)] if i % 3 == 0 else ""])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue(), bad, dups


def test_10k_xlsx_import_stores_exactly_the_rows(tmp_path, db_url) -> None:  # type: ignore[no-untyped-def]
    n = 10_000
    data, bad, dups = _big_xlsx(n)
    p = parse_contacts(data, "big.xlsx")
    assert p.total_rows == n
    assert {r for r, _ in p.errors} == bad and all("无效" in m for _, m in p.errors)
    assert {d.row: d.first_row for d in p.duplicates} == dups
    assert len(p.contacts) == n - len(bad) - len(dups)
    factory = make_env(tmp_path / "var", db_url, None).factory()
    with session_scope(factory) as s:
        lst = save_list(s, "一万户", p)
        list_id = lst.id
    with session_scope(factory) as s:
        stored = s.execute(select(Contact.row, Contact.name, Contact.phone, Contact.dial,
                                  Contact.extension, Contact.address, Contact.note,
                                  Contact.variables)
                           .where(Contact.list_id == list_id).order_by(Contact.row)).all()
    want = [(c.row, c.name, c.phone, c.dial, c.extension, c.address, c.note, c.variables)
            for c in p.contacts]
    assert [tuple(r) for r in stored] == want
    notes = {r.note for r in stored}
    assert set(NASTY) - {"回\r\n车"} <= notes  # every awkward cell came back as it was read
    assert "回\n车" in notes  # (XML itself reads CR LF in a cell as LF)


def test_awkward_csv_cells_round_trip(tmp_path, db_url) -> None:  # type: ignore[no-untyped-def]
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["姓名", "电话", "备注", "楼栋"])
    for i, cell in enumerate(NASTY):
        w.writerow([cell, f"13800000{i:03d}", cell, cell])
    p = parse_contacts(buf.getvalue().encode(), "a.csv")
    assert len(p.contacts) == len(NASTY) and not p.errors
    factory = make_env(tmp_path / "var", db_url, None).factory()
    with session_scope(factory) as s:
        list_id = save_list(s, "怪字符", p).id
    with session_scope(factory) as s:
        stored = s.execute(select(Contact.name, Contact.note, Contact.variables)
                           .where(Contact.list_id == list_id).order_by(Contact.row)).all()
    assert [tuple(r) for r in stored] == [(c.name, c.note, c.variables) for c in p.contacts]
    assert {r.note for r in stored} == {c.strip() for c in NASTY}


def test_bulk_dispatch_rows_before_jobs_in_due_order(tmp_path, db_url) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tmp_path / "var", db_url, None)
    factory, redis = env.factory(), env.redis()
    nums = numbers(300)
    cid = setup_campaign(factory, nums, lines=250, name="a")
    with session_scope(factory) as s:
        service.add_do_not_call(s, nums[2], "不要再打")
    queue = f"bulk-{uuid.uuid4().hex[:8]}"
    d = Dispatcher(factory, redis, queue_name=queue)
    got, over = d.dispatch_campaign(cid)
    assert (got, over) == (250, False)
    with session_scope(factory) as s:
        targets = s.execute(select(Target.id, Target.contact_id, Target.state, Target.result,
                                   Contact.phone)
                            .join(Contact, Contact.id == Target.contact_id)
                            .where(Target.campaign_id == cid).order_by(Target.id)).all()
        attempts = s.scalars(select(Attempt).where(Attempt.campaign_id == cid)
                             .order_by(Attempt.id)).all()
        dnc_phone = s.scalar(select(Contact.phone).where(Contact.dial == nums[2]))
    callable_targets = [t for t in targets if t.phone != dnc_phone]
    # the first 250 callable targets in due order (all due now → by id), one queued row each
    assert [a.target_id for a in attempts] == [t.id for t in callable_targets[:250]]
    by_id = {t.id: t for t in targets}
    for a in attempts:
        t = by_id[a.target_id]
        assert (a.contact_id, a.phone, a.state, a.number, a.completed) == (
            t.contact_id, t.phone, "queued", 0, False)
        assert a.queued_at is not None and a.started_at is None
        assert t.state == "active"
    assert [(t.state, t.result) for t in targets if t.phone == dnc_phone] == [("done", "dnc")]
    assert {t.state for t in callable_targets[250:]} == {"pending"}
    # the RQ queue holds exactly those attempts, in the same order, as place_call(id) jobs
    from rq.job import Job

    queued = [x.decode() for x in redis.lrange(f"rq:queue:{queue}", 0, -1)]
    assert queued == [job_id(a.id) for a in attempts]
    job = Job.fetch(queued[-1], connection=redis)
    assert (job.func_name, job.args) == (JOB_FUNC, (attempts[-1].id,))
    assert d.dispatch_campaign(cid) == (0, False)  # no free line left

    # a second campaign over the same list: numbers already queued by the first are busy
    with session_scope(factory) as s:
        c2 = service.create_campaign(s, "b", "list-a", "mask_reservation", lines=300,
                                     windows="00:00-24:00")
        service.start(s, c2.id)
        c2_id = c2.id
    assert d.dispatch_campaign(c2_id) == (len(callable_targets) - 250, False)
    with session_scope(factory) as s:
        phones2 = s.scalars(select(Attempt.phone).where(Attempt.campaign_id == c2_id)).all()
    assert sorted(phones2) == sorted(t.phone for t in callable_targets[250:])
    redis.delete(f"rq:queue:{queue}")
