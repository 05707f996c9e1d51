"""The resident's voice on the pages (fast layer; tests/campaign/test_voice_real_calls.py hears it
over real SIP and plays it in Chromium): reply audio stored through the line worker's job code,
served with range requests to the contact page and the welfare follow-up list, hidden from another
committee, named in the exports, purged after the retention, deleted per resident by an admin
(audited)."""

from __future__ import annotations

import csv
import io
import json
import wave
from datetime import timedelta

import openpyxl
import pytest
from sqlalchemy import func, select

from callbot import recordings
from callbot.accounts import AuditLog, Ownership
from callbot.campaign.jobs import CallOutcome, LineContext, run_attempt
from callbot.campaign.models import Answer, Attempt, Target, utcnow
from callbot.recordings import Recording
from callbot.session import Reply
from tests.conftest import REPLIES
from tests.web.conftest import post
from tests.web.helpers import make_campaign

pytest.importorskip("soundfile")


def _pcm(name: str) -> bytes:
    with wave.open(str(REPLIES / name), "rb") as w:
        return w.readframes(w.getnframes())


def _call(app, cid: int, contact_name: str, replies: list[tuple[str, str, dict]]) -> int:  # type: ignore[no-untyped-def]
    """One answered call run by the line worker's job code (``run_attempt``): each reply
    (clip, text, answers it produced) handed over as the session hands it."""
    from callbot.campaign.models import Contact

    factory = app.extensions["callbot_sessionmaker"]
    with factory() as s:
        t, ct = s.execute(select(Target, Contact).join(Contact, Contact.id == Target.contact_id)
                          .where(Target.campaign_id == cid, Contact.name == contact_name)).one()
        from callbot.campaign.models import Campaign

        camp = s.get(Campaign, cid)
        camp.state, camp.windows = "running", [["00:00", "24:00"]]
        a = Attempt(campaign_id=cid, target_id=t.id, contact_id=ct.id, phone=ct.phone,
                    state="queued")
        s.add(a)
        t.state = "active"
        s.commit()
        aid = a.id

    def runner(job, on_record, *, on_end=None, on_reply=None):  # type: ignore[no-untyped-def]
        t0, lines = 3.0, []
        for i, (clip, text, answers) in enumerate(replies):
            pcm = _pcm(clip)
            lines += [{"role": "bot", "text": "请问…", "t": t0}, {"role": "callee", "text": text}]
            on_reply(Reply(step="ask_health", text=text, confidence=0.9, start_s=t0,
                           end_s=t0 + len(pcm) / 16000, audio=pcm, fields=tuple(answers),
                           line=2 * i + 1))
            for k, v in answers.items():
                on_record(k, v)
            t0 += 5
        on_end("completed")
        return CallOutcome(outcome="answered", completed=True, sip_code=200, talk_s=t0,
                           ended="completed", transcript=lines)

    # a runner without on_heard (the older plug-in shape): answers arrive through on_record
    ctx = LineContext(factory=factory, runner=runner, worker_id="t")  # type: ignore[arg-type]
    assert run_attempt(ctx, aid) == "answered"
    return aid


@pytest.fixture
def voiced(app):  # type: ignore[no-untyped-def]
    """A welfare campaign of 东风居委会: 张三 said 不太好 (needs help), 王五 我很好."""
    cid = make_campaign(app, "welfare_check", "关怀录音")
    with app.extensions["callbot_sessionmaker"]() as s:
        s.add(Ownership(kind="campaign", object_id=str(cid), committee="东风居委会",
                        created_by="staff_a"))
        s.commit()
    _call(app, cid, "张三", [("butaihao.wav", "不太好",
                              {"welfare": "needs_help", "note": "不太好"})])
    _call(app, cid, "王五", [("wohenhao.wav", "我很好", {"welfare": "ok"}),
                           ("buxuyao.wav", "不需要", {})])
    with app.extensions["callbot_sessionmaker"]() as s:
        recs = {r.text: r for r in s.scalars(select(Recording))}
        contact = s.scalar(select(Attempt.contact_id).where(Attempt.id == recs["不太好"].attempt_id))
    return cid, contact, recs


def test_reply_audio_is_stored_compressed_and_linked_to_its_answers(app, voiced) -> None:  # type: ignore[no-untyped-def]
    cid, _contact, recs = voiced
    assert set(recs) == {"不太好", "我很好", "不需要"}
    r = recs["不太好"]
    assert (r.kind, r.step, r.line, r.mime) == ("reply", "ask_health", 1, "audio/ogg")
    clip = _pcm("butaihao.wav")
    assert r.duration_s == pytest.approx(len(clip) / 16000, abs=0.001)
    store = recordings.DatabaseStore(app.extensions["callbot_sessionmaker"])
    data = store.get(r.key)
    assert data[:4] == b"OggS" and len(data) == r.size
    assert len(data) < len(clip) / 4  # compressed: a quarter of the PCM at most
    pcm, rate = recordings.decode(data)
    assert rate == 8000 and abs(len(pcm) - len(clip)) <= 2 * 8000 * 0.03
    with app.extensions["callbot_sessionmaker"]() as s:
        links = {(a.field, a.recording_id) for a in s.scalars(
            select(Answer).where(Answer.campaign_id == cid))}
    assert ("welfare", r.id) in links and ("note", r.id) in links
    assert ("welfare", recs["我很好"].id) in links
    assert not any(rid == recs["不需要"].id for _f, rid in links)  # it recorded nothing


def test_contact_page_and_follow_up_play_the_reply(app, login_as, voiced) -> None:  # type: ignore[no-untyped-def]
    cid, contact, recs = voiced
    staff = login_as("staff_a")
    page = staff.get(f"/campaigns/{cid}/contacts/{contact}").get_data(as_text=True)
    src = f'/recordings/{recs["不太好"].id}.ogg'
    assert f'src="{src}"' in page and page.count("<audio") == 3  # 近况, 居民原话, the chat line
    follow = staff.get(f"/results/{cid}").get_data(as_text=True).split('id="follow-up"')[1]
    follow = follow.split("</table>")[0]
    assert "不太好" in follow and f'src="{src}"' in follow
    assert f'/recordings/{recs["我很好"].id}.ogg' not in follow  # fine: not on the list
    whole = staff.get(src)
    assert whole.status_code == 200 and whole.mimetype == "audio/ogg"
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = staff.get(src, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == whole.data[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(whole.data)}"
    assert staff.get(src, headers={"Range": f"bytes={len(whole.data) + 10}-"}).status_code == 416


def test_another_committee_cannot_hear_it(app, login_as, voiced) -> None:  # type: ignore[no-untyped-def]
    cid, contact, recs = voiced
    src = f'/recordings/{recs["不太好"].id}.ogg'
    other = login_as("staff_b")
    assert other.get(src).status_code == 404
    assert other.get(f"/campaigns/{cid}/contacts/{contact}").status_code == 404
    assert app.test_client().get(src).status_code == 302  # not logged in: to the login page
    assert login_as("super").get(src).status_code == 200  # reads everything, as the page
    assert login_as("staff_a").get("/recordings/999999.ogg").status_code == 404


def test_exports_name_the_reply_audio(app, login_as, voiced) -> None:  # type: ignore[no-untyped-def]
    cid, _contact, recs = voiced
    staff = login_as("staff_a")
    rows = list(csv.reader(io.StringIO(
        staff.get(f"/results/{cid}/export.csv").data.decode("utf-8-sig"))))
    col = rows[0].index("回答录音")
    by_name = {r[1]: r[col] for r in rows[1:]}
    assert by_name["张三"] == f'http://localhost/recordings/{recs["不太好"].id}.ogg'
    assert by_name["王五"] == f'http://localhost/recordings/{recs["我很好"].id}.ogg'
    assert "整通录音" not in rows[0]  # the campaign does not record whole calls
    wb = openpyxl.load_workbook(io.BytesIO(staff.get(f"/results/{cid}/export.xlsx").data))
    follow = list(wb["关怀"].iter_rows(values_only=True))
    audio = follow[0].index("回答录音")
    assert follow[1][1] == "张三"
    assert follow[1][audio].endswith(f'/recordings/{recs["不太好"].id}.ogg')
    # the link plays for the staff who exported it
    assert staff.get(by_name["张三"].removeprefix("http://localhost")).status_code == 200


def test_purge_deletes_recordings_past_the_retention(app, voiced, redis_server_url) -> None:  # type: ignore[no-untyped-def]
    import redis

    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.store import open_db
    from callbot.config import load_settings
    from tests.campaign.conftest import redis_db_url

    _cid, _contact, recs = voiced
    factory = open_db(load_settings())  # the dispatcher's own (SQLite writers serialised)
    old = recs["不太好"]
    with factory() as s:
        s.get(Recording, old.id).created_at = utcnow() - timedelta(days=91)
        s.get(Recording, recs["我很好"].id).created_at = utcnow() - timedelta(days=89)
        s.commit()
    conn = redis.Redis.from_url(redis_db_url(redis_server_url, 13))
    d = Dispatcher(factory, conn, queue_name="purge-t", recording_days=90)
    stats = d.tick()
    assert stats.purged == 1
    assert d.tick().purged == 0  # once an hour, not every tick
    with factory() as s:
        assert s.get(Recording, old.id) is None
        assert s.scalar(select(func.count()).select_from(recordings.AudioBlob)
                        .where(recordings.AudioBlob.key == old.key)) == 0
        assert s.scalar(select(func.count()).select_from(Answer)
                        .where(Answer.recording_id == old.id)) == 0
        assert s.get(Recording, recs["我很好"].id) is not None


def test_admin_deletes_one_residents_recordings_and_transcripts(app, login_as, voiced) -> None:  # type: ignore[no-untyped-def]
    cid, contact, recs = voiced
    staff = login_as("staff_a")
    assert staff.get("/recordings/forget").status_code == 403
    admin = login_as("admin")
    page = admin.get(f"/campaigns/{cid}/contacts/{contact}").get_data(as_text=True)
    assert "删除该居民的录音和文字记录" in page
    found = admin.get("/recordings/forget?phone=138 0013 8000").get_data(as_text=True)
    assert "1 段录音" in found and "1 次通话的文字记录" in found
    r = post(admin, "/recordings/forget", {"phone": "+8613800138000",
                                           "next": f"/campaigns/{cid}/contacts/{contact}"},
             page="/recordings/forget")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/contacts/{contact}")
    factory = app.extensions["callbot_sessionmaker"]
    with factory() as s:
        left = {x.text for x in s.scalars(select(Recording))}
        assert left == {"我很好", "不需要"}  # 王五's stay
        assert s.scalar(select(func.count()).select_from(recordings.AudioBlob)
                        .where(recordings.AudioBlob.key == recs["不太好"].key)) == 0
        a = s.scalars(select(Attempt).where(Attempt.contact_id == contact)).one()
        assert a.transcript is None
        kept = {x.field: x.value for x in s.scalars(select(Answer).where(
            Answer.contact_id == contact))}
        assert kept == {"welfare": "needs_help"}  # the result stays, her words go
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "forget_resident")).one()
        assert entry.user_name == "admin" and entry.target == "phone:138****8000"
        assert entry.detail == "recordings=1 transcripts=1 answers=1"
    assert admin.get(f'/recordings/{recs["不太好"].id}.ogg').status_code == 404
    bad = post(admin, "/recordings/forget", {"phone": "12345"}, page="/recordings/forget")
    assert bad.status_code == 400 and "电话号码无法识别" in bad.get_data(as_text=True)


def test_cli_gets_purges_and_forgets(app, voiced, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from tests.conftest import callbot_cmd, env_for_subprocess

    _cid, _contact, recs = voiced

    def cli(*args: str) -> str:
        r = subprocess.run(callbot_cmd("recordings", *args), env=env_for_subprocess(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    cli("get", str(recs["不太好"].id), "-o", str(tmp_path / "r.wav"))
    with wave.open(str(tmp_path / "r.wav"), "rb") as w:
        assert w.getframerate() == 8000
        assert abs(w.getnframes() - len(_pcm("butaihao.wav")) // 2) <= 8000 * 0.03
    assert "purged 0" in cli("purge")
    gone = json.loads(cli("forget", "13800138000", "--yes", "--json"))
    assert gone == {"phone": "+8613800138000", "recordings": 1, "transcripts": 1, "answers": 1}
    with app.extensions["callbot_sessionmaker"]() as s:
        entry = s.scalars(select(AuditLog).where(AuditLog.action == "forget_resident")).one()
        assert entry.user_name.startswith("cli:") and entry.target == "phone:138****8000"
    r = subprocess.run(callbot_cmd("recordings", "get", "999999", "-o", str(tmp_path / "x.ogg")),
                       env=env_for_subprocess(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "没有编号为 999999 的录音" in r.stderr


def test_whole_call_recording_is_a_campaign_setting_off_by_default(app, login_as) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from callbot.campaign.lists import save_list
    from callbot.campaign.models import Campaign
    from callbot.contacts import parse_contacts
    from tests.conftest import callbot_cmd, env_for_subprocess
    from tests.web.conftest import GOOD_ROWS, csrf_token, make_xlsx

    with app.extensions["callbot_sessionmaker"]() as s:
        list_id = save_list(s, "名单R", parse_contacts(make_xlsx(GOOD_ROWS), "a.xlsx")).id
        s.commit()
    c = login_as("staff_a")
    html = c.get("/campaigns/new").get_data(as_text=True)
    assert "录制整通电话" in html and "个人信息" in html and "90 天后自动删除" in html
    assert 'name="record_calls"' in html and "checked" not in html.split('name="record_calls"')[1][:40]
    form = {"csrf_token": csrf_token(c, "/campaigns/new"), "list_id": list_id,
            "script": "welfare_check", "lines": 2, "windows": "09:00-11:30", "max_attempts": 3,
            "retry_minutes": 30, "daily_cap": 3}
    for name, extra in (("不录", {}), ("录音", {"record_calls": "y"})):
        r = c.post("/campaigns/new", data={**form, "name": name, **extra})
        assert r.status_code == 302
    with app.extensions["callbot_sessionmaker"]() as s:
        got = {x.name: x.record_calls for x in s.scalars(select(Campaign))}
    assert got == {"不录": False, "录音": True}
    shown = c.get(r.headers["Location"]).get_data(as_text=True)
    assert "录制整通电话" in shown
    out = subprocess.run(callbot_cmd("campaign", "create", "CLI录音", "--list", "名单R", "--script",
                                     "welfare_check", "--record-calls", "--json"),
                         env=env_for_subprocess(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["record_calls"] is True
    bad = subprocess.run(callbot_cmd("recordings", "purge"),
                         env=env_for_subprocess(CALLBOT_RECORDING_DAYS="0"),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "录音保留天数须为正整数" in bad.stderr


def test_a_killed_workers_call_recordings_do_not_linger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A line worker starting up deletes whole-call WAVs older than the longest call (a worker
    killed mid-call left them); a file still being written stays."""
    import os
    import time

    from callbot.campaign.runner import _sweep_incoming

    old, live = tmp_path / "attempt-1.wav", tmp_path / "attempt-2.wav"
    for p in (old, live):
        p.write_bytes(b"RIFF")
    hour = time.time() - 3600
    os.utime(old, (hour, hour))
    _sweep_incoming(tmp_path)
    assert not old.exists() and live.exists()
