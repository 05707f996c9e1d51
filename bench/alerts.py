"""Alert benchmark on real calls: a welfare campaign over SIP (resident simulator, ``callbot
worker``, the dispatcher and its alert thread) where every other resident says she is not well;
a local HTTP server stands in for the group robot.

Prints, per alert, the delay from the answer being heard (the Answer row's ``heard_at``) to the
robot receiving the POST: p50 / p95 / max (goal: ≤ 10 s). With ``--outage S`` the robot goes down
for S seconds once the first alert arrived: it prints how many alerts were held back, how long
after its return the last one arrived, and the count of duplicates (goal 0) and missing (goal 0).

Run: ``.venv/bin/python bench/alerts.py [--residents 16] [--lines 4] [--outage 60]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--residents", type=int, default=16)
    ap.add_argument("--lines", type=int, default=4)
    ap.add_argument("--outage", type=float, default=0.0, help="robot down this many seconds")
    args = ap.parse_args()

    import yaml
    from sqlalchemy import select

    from callbot.alerts import Alert
    from callbot.campaign.models import Answer
    from callbot.db import session_scope
    from callbot.residents import Simulator
    from tests.alerts.robot import GroupRobot
    from tests.campaign.conftest import make_env, numbers, setup_campaign
    from tests.campaign.harness import running, wait_finished
    from tests.campaign.population import sip_conf
    from tests.conftest import REPLIES, free_port

    nums = numbers(args.residents)
    trouble = {n for n in nums if int(n[-1]) % 2}
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as d, GroupRobot() as robot:
        tmp = Path(d)
        table = tmp / "personas.yaml"
        table.write_text(yaml.safe_dump({"residents": [
            {"number": n, "behaviour": "answer",
             "replies": [str(REPLIES / "butaihao.wav")] if n in trouble
             else [str(REPLIES / "tinghaode.wav"), str(REPLIES / "buxuyao.wav")]}
            for n in nums]}), "utf-8")
        port = free_port()
        sim = Simulator(str(table), str(tmp / "rec"), port=port, procs=(args.lines + 3) // 4 + 1)
        sim.start()
        try:
            env = make_env(tmp / "var", None, None, CALLBOT_SIP_CONF=str(sip_conf(
                tmp / "sip.conf", port, 6.0)), CALLBOT_TTS_ENGINE="espeak",
                CALLBOT_CALL_TTS_RATE="+40%", CALLBOT_ALERT_WEBHOOK=robot.url,
                CALLBOT_HEARTBEAT_S="5")
            factory = env.factory()
            cid = setup_campaign(factory, nums, script="welfare_check", lines=args.lines,
                                 name="bench-alerts", policy={"delay_s": 1, "max_attempts": 2})
            t0 = time.monotonic()
            back = None
            with running(env, lines=args.lines, queue="bench-alerts", interval=0.5,
                         dead_after_s=30):
                if args.outage:
                    robot.wait_for(1, timeout=300)
                    robot.stop()
                    down = time.time()
                    time.sleep(args.outage)
                    robot.start()
                    back = time.time()
                wait_finished(factory, cid, 1800)
                deadline = time.monotonic() + 120
                while len(robot.contents()) < len(trouble) and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(3)
            elapsed = time.monotonic() - t0
            with session_scope(factory) as s:
                heard = {a.id: ans.heard_at for a, ans in s.execute(
                    select(Alert, Answer).join(Answer, (Answer.attempt_id == Alert.attempt_id)
                                               & (Answer.field == "welfare"))).all()}
        finally:
            sim.stop()
    got: dict[int, list[float]] = {}
    for m in robot.received:
        aid = int(m["content"].rsplit("编号：#", 1)[1].split()[0])
        got.setdefault(aid, []).append(m["at"])
    at = {a: heard[a].replace(tzinfo=UTC).timestamp() for a in heard}
    held = {a for a in got if a in at and back is not None and at[a] < back and got[a][0] >= back}
    delays = sorted(got[a][0] - at[a] for a in got if a in at and a not in held)
    dup = sum(len(v) - 1 for v in got.values())
    missing = len(trouble) - len(got)
    print(f"campaign: {args.residents} residents, {args.lines} lines, {len(trouble)} in trouble, "
          f"{elapsed:.0f} s")
    if delays:
        p95 = delays[min(len(delays) - 1, int(round(0.95 * (len(delays) - 1))))]
        print(f"answer heard → group robot: p50 {statistics.median(delays):.2f} s, p95 "
              f"{p95:.2f} s, max {delays[-1]:.2f} s over {len(delays)} alert(s) (goal ≤ 10 s"
              f"{'; those held by the outage apart' if args.outage else ''})")
    if args.outage and back is not None:
        last = max((got[a][0] for a in held), default=back)
        print(f"outage {args.outage:.0f} s: {len(held)} alert(s) raised while the robot was down "
              f"(or just before) arrived after it returned, the last {last - back:.1f} s after "
              f"(retry backoff ≤ 30 s); {sum(1 for a in held if at[a] >= down)} heard during it")
    print(f"duplicates: {dup} (goal 0); missing: {missing} (goal 0)")


if __name__ == "__main__":
    main()
