"""What keeping the resident's voice costs: bytes per second stored, CPU to compress, time to
store in the database, and whether the recogniser still hears the same words after compression.

    python bench/recordings.py [--levels 0.95,0.98,0.99] [--call-s 60] [--db sqlite|URL]

Figures (all on this machine, one thread):
  * per Opus level: stored bytes per second of reply audio (the reply clips, one file per reply,
    headers included) and of a long recording (clips back to back), encode CPU ms per audio s,
    replies still matched by the KWS recogniser after encode → decode (of all clips);
  * a whole call of --call-s seconds: stored kB, encode ms;
  * storing: ms per reply for the row written on the call's thread (``add_reply``) and for the
    encode + blob on the audio thread (``put_audio``), on a fresh SQLite file (or --db postgresql://…/admin-db: a throwaway database is made beside it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callbot import recordings  # noqa: E402

REPLIES = REPO / "callbot" / "data" / "replies"


def _clips() -> dict[str, bytes]:
    out = {}
    for p in sorted(REPLIES.glob("*.wav")):
        with wave.open(str(p), "rb") as w:
            out[p.stem] = w.readframes(w.getnframes())
    return out


def _heard(pcm: bytes, expect: list[str], tmp: Path) -> str | None:
    from callbot.cli.speech import listen_file

    path = tmp / "h.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return listen_file(path, expect, engine_name="kws", model=None, no_input_s=3.0,
                       max_reply_s=8.0, trailing_silence_s=0.5)["match"]


def levels(levels: list[float], clips: dict[str, bytes], tmp: Path, asr: bool) -> None:
    texts = json.loads((REPLIES / "transcripts.json").read_text(encoding="utf-8"))
    expect = list(texts.values())
    audio_s = sum(len(p) for p in clips.values()) / 16000
    long_pcm = b"".join(clips.values())
    print(f"{len(clips)} reply clips, {audio_s:.1f} s of audio")
    print("level  reply B/s  long B/s  encode ms/s  heard after decode")
    for level in levels:
        size, cpu = 0, 0.0
        ok = 0
        for stem, pcm in clips.items():
            t = time.process_time()
            data = recordings.encode(pcm, level=level)
            cpu += time.process_time() - t
            size += len(data)
            if asr:
                back, _rate = recordings.decode(data)
                ok += _heard(back, expect, tmp) == texts[stem]
        long_b = len(recordings.encode(long_pcm, level=level)) / (len(long_pcm) / 16000)
        heard = f"{ok}/{len(clips)}" if asr else "-"
        print(f"{level:5.2f}  {size / audio_s:9.0f}  {long_b:8.0f}  {cpu / audio_s * 1000:11.2f}"
              f"  {heard}")
    if asr:
        ok = sum(_heard(p, expect, tmp) == texts[s] for s, p in clips.items())
        print(f"(uncompressed PCM heard: {ok}/{len(clips)})")


def whole_call(call_s: float, clips: dict[str, bytes]) -> None:
    pcm = b""
    while len(pcm) < call_s * 16000:
        pcm += b"".join(clips.values()) + b"\0" * 16000
    pcm = pcm[: int(call_s * 16000)]
    t = time.process_time()
    data = recordings.encode(pcm)
    cpu = time.process_time() - t
    print(f"whole call {call_s:.0f} s: {len(data) / 1024:.1f} kB stored "
          f"({len(data) / call_s:.0f} B/s, {len(pcm) / 1024:.0f} kB as PCM), encode {cpu * 1000:.0f} ms")


def storing(db: str | None, clips: dict[str, bytes], tmp: Path, n: int = 200) -> None:
    if db and db != "sqlite":
        db = _throwaway_db(db)
    env = {"CALLBOT_DATA_DIR": str(tmp / "var")}
    if db and db != "sqlite":
        env["DATABASE_URL"] = db
    try:
        _store_bench(env, clips, n)
    finally:
        if db and db != "sqlite":
            _drop_db(db)


def _throwaway_db(admin_url: str) -> str:
    """A fresh PostgreSQL database beside *admin_url*'s (dropped at the end)."""
    import os

    import psycopg2

    name = f"callbot_bench_{os.getpid()}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_db(url: str) -> None:
    import psycopg2

    base, name = url.rsplit("/", 1)
    conn = psycopg2.connect(base + "/postgres")
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def _store_bench(env: dict[str, str], clips: dict[str, bytes], n: int) -> None:
    from callbot.campaign import service
    from callbot.campaign.lists import save_list
    from callbot.campaign.models import Attempt, Contact, Target
    from callbot.campaign.store import open_db
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope
    from callbot.session import Reply
    settings = load_settings(env)
    factory = open_db(settings)
    with session_scope(factory) as s:
        save_list(s, "bench", parse_contacts("姓名,电话\n张三,13800138000\n".encode(), "b.csv"))
        c = service.create_campaign(s, "bench", "bench", "welfare_check")
        t = s.query(Target).one()
        ct = s.get_one(Contact, t.contact_id)
        a = Attempt(campaign_id=c.id, target_id=t.id, contact_id=ct.id, phone=ct.phone,
                    state="dialing")
        s.add(a)
        s.flush()
        owner = recordings.Owner(a.id, c.id, ct.id, ct.phone)
    store = recordings.open_store(settings, factory)
    pcms = list(clips.values())
    row, audio = [], []
    for i in range(n):
        pcm = pcms[i % len(pcms)]
        r = Reply(step="ask_health", text="不太好", confidence=0.9, start_s=1.0,
                  end_s=1.0 + len(pcm) / 16000, audio=pcm)
        t0 = time.perf_counter()
        added = recordings.add_reply(factory, store.name, owner, r)
        t1 = time.perf_counter()
        assert added is not None
        recordings.put_audio(factory, store, added[0], added[1], pcm)
        row.append(t1 - t0)
        audio.append(time.perf_counter() - t1)
    name = factory.kw["bind"].dialect.name
    for what, times in (("row (call thread)", row), ("encode + store (audio thread)", audio)):
        times.sort()
        print(f"{name} {what}: median {statistics.median(times) * 1000:.1f} ms, "
              f"p95 {times[int(0.95 * n)] * 1000:.1f} ms per reply ({n} replies)")
    factory.kw["bind"].dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="0.9,0.95,0.98,0.99")
    ap.add_argument("--call-s", type=float, default=60.0)
    ap.add_argument("--db", default="sqlite")
    ap.add_argument("--no-asr", action="store_true", help="skip the recogniser check")
    args = ap.parse_args()
    clips = _clips()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        levels([float(x) for x in args.levels.split(",")], clips, tmp, not args.no_asr)
        whole_call(args.call_s, clips)
        storing(args.db, clips, tmp)


if __name__ == "__main__":
    main()
