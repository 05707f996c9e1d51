"""The store process's CPU per call: a real ``callbot.campaign.store_service`` on SQLite (or
``DATABASE_URL``) and Redis (embedded, or ``REDIS_URL``), driven with the requests a line process
sends for one call of the mask script, call after call.

Run: ``.venv/bin/python bench/store_ops.py`` (200 calls). Per call, as ``jobs.run_attempt`` and
the line-worker loop send them: take, status (busy), begin_dialing, three replies (add_reply,
put_audio with ~1.5 s of Opus, heard), record_end, finish, kick, status, job_done; and
``--heartbeats`` heartbeats (4: what 34 line processes beating every 5 s send per call at 100
lines). Prints the store process's CPU-ms per call and per request, and requests per call.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass
class _Reply:
    step: str
    line: int
    text: str
    pinyin: str
    confidence: float
    intent: str
    value: Any
    urgent: bool
    start_s: float
    end_s: float
    duration_s: float
    audio: bytes
    fields: tuple[str, ...]


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def run(calls: int, heartbeats: int, spy: Path | None = None) -> dict[str, Any]:
    import numpy as np

    from callbot.campaign import service
    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.jobs import CallOutcome
    from callbot.campaign.linestore import RpcQueue, RpcStore, ping
    from callbot.campaign.lists import save_list
    from callbot.campaign.store import open_db, redis_connection
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope
    from callbot.recording_audio import Owner

    tmp = Path(tempfile.mkdtemp(prefix="callbot-store-ops-"))
    env = {"CALLBOT_DATA_DIR": str(tmp / "var")}
    for k in ("DATABASE_URL", "REDIS_URL"):
        if os.environ.get(k):
            env[k] = os.environ[k]
    settings = load_settings(env)
    factory = open_db(settings)
    redis = redis_connection(settings)
    csv = "姓名,电话\n" + "".join(f"张{i}芳,1390000{i:04d}\n" for i in range(calls))
    with session_scope(factory) as s:
        save_list(s, "ops", parse_contacts(csv.encode(), "ops.csv"))
        cid = service.create_campaign(s, "ops", "ops", "mask_reservation", lines=calls,
                                      windows="00:00-24:00").id
        service.start(s, cid)
    queue_name = f"store-ops-{os.getpid()}"
    Dispatcher(factory, redis, queue_name=queue_name).tick()  # no settings: no prerender
    address = f"@callbot-store-ops-{os.getpid()}"
    proc = subprocess.Popen([sys.executable, "-m", "callbot.campaign.store_service"],
                            env=dict(os.environ, **env, CALLBOT_STORE_SOCKET=address,
                                     PYTHONPATH=str(REPO)))
    try:
        t0 = time.monotonic()
        while True:
            try:
                ping("\0" + address[1:])
                break
            except Exception:
                if time.monotonic() - t0 > 60:
                    raise
                time.sleep(0.2)
        store = RpcStore(address)
        queue = RpcQueue(store, queue_name)
        worker_id = f"bench-{os.getpid()}-1"
        store.worker_started(worker_id, "bench", os.getpid(), 3, None, None)
        rng = np.random.default_rng(1)
        pcm = (rng.standard_normal(12000) * 3000).astype(np.int16).tobytes()  # 1.5 s
        replies = [("ask_need", "需要", "xu1 yao4", "yes", True, ("need_masks",)),
                   ("ask_count", "两个", "liang3 ge4", "quantity", 2, ("masks",)),
                   ("confirm", "是的", "shi4 de5", "yes", True, ())]
        counts: dict[str, int] = {}
        from callbot.campaign import linestore as orig

        real_call = orig.call

        def counting(address: str, op: str, *a: Any, **k: Any) -> Any:
            counts[op] = counts.get(op, 0) + 1
            return real_call(address, op, *a, **k)

        orig.call = counting  # type: ignore[assignment]
        spying = None
        if spy is not None:  # py-spy (pip install py-spy) samples the store process
            spying = subprocess.Popen(["py-spy", "record", "-p", str(proc.pid), "-r", "400",
                                       "-f", "raw", "-o", str(spy)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        cpu0 = _cpu(proc.pid)
        w0 = time.monotonic()
        done = 0
        while done < calls:
            taken = queue.take(1)
            if taken is None:
                break
            queue.status(worker_id, 1, None)
            job = store.begin_dialing(int(taken.args[0]), worker_id, None)
            if job is None:
                queue.done(taken)
                continue
            owner = Owner(job.attempt_id, job.campaign_id, job.contact_id, job.phone)
            for i, (step, text, py, intent, value, fields) in enumerate(replies):
                reply = _Reply(step, i, text, py, 0.9, intent, value, False, 1.0 + i * 8,
                               2.5 + i * 8, 1.5, pcm, fields)
                added = store.add_reply(owner, reply)
                assert added is not None
                store.put_audio(added[0], added[1], pcm)
                if fields:
                    store.heard(job, [(fields[0], value, added[0])], [])
            store.record_end(job.attempt_id, "completed")
            store.finish(job.attempt_id, CallOutcome(
                outcome="answered", completed=True, sip_code=200, talk_s=50.0, ended="completed",
                answers={"need_masks": True, "masks": 2}), None)
            queue.kick()
            queue.status(worker_id, 0, None)
            queue.done(taken)
            for _ in range(heartbeats):
                store.heartbeat(worker_id, None, None)
            done += 1
        wall = time.monotonic() - w0
        cpu = _cpu(proc.pid) - cpu0
        store.worker_stopped(worker_id)  # the store process then ends at once
        orig.call = real_call  # type: ignore[assignment]
        if spying is not None:
            spying.send_signal(2)
            spying.wait(60)
        n = sum(counts.values())
        return {"calls": done, "store_cpu_ms_per_call": round(cpu / max(1, done) * 1000, 2),
                "requests_per_call": round(n / max(1, done), 1),
                "cpu_ms_per_request": round(cpu / max(1, n) * 1000, 3),
                "wall_s": round(wall, 1), "by_op": {k: round(v / max(1, done), 1)
                                                      for k, v in sorted(counts.items())}}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        import shutil

        try:
            import psutil

            for p in psutil.process_iter(["cmdline"]):
                if "redis-server" in " ".join(p.info["cmdline"] or []) and str(tmp) in \
                        " ".join(p.info["cmdline"] or []):
                    p.terminate()
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--heartbeats", type=int, default=4, help="heartbeats per call")
    ap.add_argument("--py-spy", type=Path, default=None, metavar="OUT",
                    help="sample the store process with py-spy into OUT (collapsed stacks)")
    args = ap.parse_args(argv)
    r = run(args.calls, args.heartbeats, args.py_spy)
    print(f"store ops: {r['calls']} calls (load {os.getloadavg()[0]:.1f}): "
          f"{r['store_cpu_ms_per_call']} CPU-ms per call in the store process, "
          f"{r['requests_per_call']} requests a call, {r['cpu_ms_per_request']} ms each; "
          f"wall {r['wall_s']} s")
    print("  requests per call: " + ", ".join(f"{k} {v}" for k, v in r["by_op"].items()))


if __name__ == "__main__":
    main()
