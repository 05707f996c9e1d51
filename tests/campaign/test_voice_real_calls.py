"""The resident's voice kept, on real parts: a welfare campaign that records whole calls, run by a
line worker (pjsua2, TTS, the KWS model, the dialogue) against the resident simulator over SIP on
127.0.0.1. The resident in trouble answers in her own words (我摔了一跤站不起来, no phrase any
prompt offers): the call records needs_help + urgent, and the stored reply audio must be her own
speech (the recogniser hears the same emergency in it, its length and loudness match the clip
played), the whole-call recording must hold
both sides (the robot's greeting, then her reply where the reply row says), and real Chromium must
play the reply on the contact page and the follow-up list (its duration > 0) while another
committee's staff gets a 404; the export names the audio."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from callbot.campaign.models import Answer, Attempt, Contact
from callbot.db import session_scope
from tests.campaign.conftest import make_env, need_real_call_parts, setup_campaign
from tests.campaign.harness import running, wait_finished
from tests.campaign.population import sip_conf
from tests.conftest import FIXTURES, REPLIES, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.slow, pytest.mark.browser]

TROUBLE = "13900006001"  # a free reply: 我摔了一跤站不起来 (needs help, urgent)
FINE = "13900006002"  # says 我很好, then 不需要
FALL = FIXTURES / "audio" / "free" / "emg_shuaile.wav"
PEOPLE = {TROUBLE: [FALL], FINE: [REPLIES / "wohenhao.wav", REPLIES / "buxuyao.wav"]}
PW = "voice-pass-1"


@pytest.fixture(scope="module", autouse=True)
def _needs_parts() -> None:
    need_real_call_parts()
    pytest.importorskip("soundfile")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    from tests.web.browser import need_chromium

    need_chromium()


def _pcm(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def _heard(pcm: bytes, tmp: Path) -> tuple[str | None, bool]:
    """(intent, urgent) the recogniser makes of *pcm*, free-form (as ``callbot listen`` would)."""
    from callbot.cli.speech import listen_file

    path = tmp / f"heard-{time.monotonic_ns()}.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    got = listen_file(path, None, engine_name="pinyin", model=None, no_input_s=3.0,
                      max_reply_s=8.0, trailing_silence_s=0.8)
    return got["intent"], got["urgent"]


def _voiced(x: np.ndarray, threshold: float = 400.0) -> np.ndarray:
    """The 20 ms frames of *x* louder than *threshold*."""
    n = len(x) // 160
    frames = x[: n * 160].reshape(n, 160).astype(np.float64)
    loud = np.sqrt((frames ** 2).mean(axis=1)) > threshold
    return frames[loud].ravel()


@pytest.mark.timeout(600)
def test_reply_audio_and_whole_call_are_kept_and_play_in_chromium(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from callbot import recordings
    from callbot.recordings import Recording
    from callbot.residents import Simulator, read_call_log

    rows = ["residents:"] + [
        f'  - {{number: "{n}", behaviour: answer, replies: '
        f'{json.dumps([str(r) for r in said])}}}' for n, said in PEOPLE.items()]
    (tmp_path / "personas.yaml").write_text("\n".join(rows) + "\n", encoding="utf-8")
    port = free_port()
    sim = Simulator(str(tmp_path / "personas.yaml"), str(tmp_path / "rec"), port=port, procs=1)
    sim.start()
    try:
        env = make_env(tmp_path / "var", None, None,
                       CALLBOT_SIP_CONF=str(sip_conf(tmp_path / "sip.conf", port)),
                       CALLBOT_TTS_ENGINE="espeak", CALLBOT_CALL_TTS_RATE="+40%")
        factory = env.factory()
        cid = setup_campaign(factory, list(PEOPLE), lines=2, script="welfare_check",
                             start=False, policy={"delay_s": 1, "max_attempts": 2})
        from callbot.campaign import service
        from callbot.campaign.models import Campaign

        with session_scope(factory) as s:
            s.get(Campaign, cid).record_calls = True
            service.start(s, cid)
        with running(env, lines=2, queue=f"voice-{os.getpid()}"):
            assert wait_finished(factory, cid, 300) == "finished"
        calls = read_call_log(tmp_path / "rec", wait_for=list(PEOPLE), timeout=10)
    finally:
        sim.stop()

    store = recordings.DatabaseStore(factory)
    with session_scope(factory) as s:
        contact = {ct.phone.removeprefix("+86"): ct.id for ct in s.scalars(select(Contact))}
        recs = s.scalars(select(Recording).order_by(Recording.id)).all()
        answers = s.scalars(select(Answer).where(Answer.campaign_id == cid)).all()
        attempts = {a.contact_id: a for a in s.scalars(select(Attempt).where(
            Attempt.outcome == "answered"))}
        s.expunge_all()
    mine = [r for r in recs if r.contact_id == contact[TROUBLE]]
    reply = next(r for r in mine if r.kind == "reply")
    whole = next(r for r in mine if r.kind == "call")
    assert {(a.field, a.value, a.recording_id) for a in answers
            if a.contact_id == contact[TROUBLE] and a.field == "welfare"} == {
        ("welfare", "needs_help", reply.id)}
    assert [a.value for a in answers if a.contact_id == contact[TROUBLE]
            and a.field == "urgent"] == [True]
    assert reply.step == "ask_health" and reply.mime == "audio/ogg"
    # the fine resident's two replies are both kept, each with its own question
    assert [r.step for r in recs if r.contact_id == contact[FINE] and r.kind == "reply"] == [
        "ask_health", "ask_help"]

    # 1. the stored reply is her speech: the recogniser hears her emergency in it, its length
    #    and its loudness are the clip's (through µ-law and Opus)
    pcm, rate = recordings.decode(store.get(reply.key))
    assert rate == 8000
    assert _heard(pcm, tmp_path) == ("emergency", True)
    clip = _pcm(FALL)
    got = np.frombuffer(pcm, dtype="<i2")
    clip_s, got_s = len(clip) / 8000, len(got) / 8000
    assert clip_s - 0.25 <= got_s <= clip_s + 0.3 + 0.2 + 0.3, (clip_s, got_s)
    ratio = _rms(_voiced(got)) / _rms(_voiced(clip))
    assert 0.5 <= ratio <= 2.0, ratio
    assert reply.size / got_s < 4000  # compressed: a few kB per second

    # 2. the whole call holds both sides: the robot's greeting where the resident heard it,
    #    her reply where the reply row says it was (the simulator said nothing during prompts)
    call_pcm, _ = recordings.decode(store.get(whole.key))
    full = np.frombuffer(call_pcm, dtype="<i2")
    talk = attempts[contact[TROUBLE]].talk_seconds
    assert talk is not None
    assert abs(len(full) / 8000 - talk) <= 1.5, (len(full) / 8000, talk)
    heard = next(c for c in calls if c["number"] == TROUBLE)
    g0, g1 = heard["prompt_spans"][0]
    greeting = full[int(g0 * 8000): int(g1 * 8000)]
    assert len(_voiced(greeting)) / 8000 >= 0.5 * (g1 - g0), "the robot's greeting is missing"
    her = full[max(0, int((reply.start_s - 0.3) * 8000)): int((reply.end_s + 0.5) * 8000)]
    assert _heard(her.tobytes(), tmp_path) == ("emergency", True)

    # 3. real Chromium plays it on the contact page and the follow-up list; another committee
    #    gets 404; the export names it
    from callbot.accounts import Ownership
    from tests.web.browser import chromium, login, new_page, run_cli, served, web_env

    with session_scope(factory) as s:
        s.add(Ownership(kind="campaign", object_id=str(cid), committee="东风居委会",
                        created_by="小张"))
    wenv = web_env(tmp_path / "var")
    run_cli(wenv, "users", "add", "小张", "--role", "staff", "--committee", "东风居委会",
            "--password", PW)
    run_cli(wenv, "users", "add", "小西", "--role", "staff", "--committee", "西湖居委会",
            "--password", PW)
    src = f"/recordings/{reply.id}.ogg"
    with served(wenv, tmp_path) as base, chromium() as browser:
        page = new_page(browser, [])
        login(page, base, "小张", PW)
        page.goto(f"{base}/campaigns/{cid}/contacts/{contact[TROUBLE]}")
        played = _duration(page, f'audio[src="{src}"]')
        assert played == pytest.approx(got_s, abs=0.15), (played, got_s)
        assert _duration(page, f'audio[src="/recordings/{whole.id}.ogg"]') == pytest.approx(
            len(full) / 8000, abs=0.2)
        page.goto(f"{base}/results/{cid}")
        assert _duration(page, f'#follow-up audio[src="{src}"]') > 0
        row_text = page.locator("#follow-up tr", has=page.locator(f'audio[src="{src}"]'))
        assert "紧急" in row_text.inner_text()  # her row says urgent, and plays her words
        export = page.request.get(f"{base}/results/{cid}/export.csv")
        assert export.status == 200
        table = list(csv.reader(io.StringIO(export.body().decode("utf-8-sig"))))
        col = table[0].index("回答录音")
        row = next(r for r in table[1:] if r[2] == TROUBLE)
        assert row[col] == f"{base}{src}"
        assert page.request.get(row[col]).status == 200
        other = new_page(browser, [])
        login(other, base, "小西", PW)
        assert other.request.get(f"{base}{src}").status == 404
        assert other.goto(f"{base}/campaigns/{cid}/contacts/{contact[TROUBLE]}").status == 404


def _duration(page, selector: str) -> float:  # type: ignore[no-untyped-def]
    """The <audio>'s duration once Chromium has loaded its metadata (fails if it cannot)."""
    page.wait_for_selector(selector, state="attached")
    return float(page.eval_on_selector(selector, """el => new Promise((ok, fail) => {
        const done = () => isFinite(el.duration) && el.duration > 0 ? ok(el.duration)
                                                                   : fail('no duration');
        if (el.readyState >= 1) return done();
        el.addEventListener('loadedmetadata', done, {once: true});
        el.addEventListener('error', () => fail('audio error ' + (el.error && el.error.code)),
                            {once: true});
        el.load();
    })"""))
