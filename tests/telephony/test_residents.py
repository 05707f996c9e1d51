"""Real calls against the resident simulator (two backend processes behind its SIP front)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from callbot.residents import read_call_log
from callbot.telephony import Answered, Disconnected, Dtmf, Frame, PlaybackEnded
from callbot.telephony.audio import contains, read_wav, rms
from tests.conftest import free_port
from tests.telephony.conftest import SIP_FIXTURES

pytestmark = pytest.mark.sip
PROMPT = SIP_FIXTURES / "prompt.wav"


def _uri(sim, number: str) -> str:
    return f"sip:{number}@127.0.0.1:{sim.port}"


def _wait_for(call, kind, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = call.events.get(timeout=max(0.01, end - time.monotonic()))
        if isinstance(ev, kind):
            return ev
        if isinstance(ev, Disconnected):
            raise AssertionError(f"call ended before {kind.__name__}: {ev.result}")
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def _log_for(sim, number: str) -> dict:
    rows = [r for r in read_call_log(sim.record_dir, wait_for=[number]) if r["number"] == number]
    assert rows, f"the simulator logged no call to {number}"
    return rows[-1]


def test_dtmf_digits_arrive_in_order(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1001"))
    _wait_for(call, Answered)
    got = []
    for expect in ("1", "2#", "3"):
        call.play(PROMPT)
        _wait_for(call, PlaybackEnded)
        for _ in expect:
            got.append(_wait_for(call, Dtmf, 5).digit)
    res = call.wait(10)
    assert "".join(got) == "12#3" and res.dtmf == "12#3"
    assert res.outcome == "answered" and res.hangup_by == "callee"


def test_prompt_reaches_the_callee_and_the_reply_reaches_us(phone, simulator) -> None:
    frames: list[bytes] = []
    call = phone.dial(_uri(simulator, "1002"), on_frame=frames.append)
    _wait_for(call, Answered)
    call.play(PROMPT)
    _wait_for(call, PlaybackEnded)
    time.sleep(3.0)  # gap (0.6 s) + reply delay + reply (1.4 s)
    call.hangup()
    res = call.wait(5)
    assert res.outcome == "answered" and res.hangup_by == "robot"

    # What the resident recorded contains our prompt, right after the answer.
    log = _log_for(simulator, "1002")
    assert log["prompts_heard"] == 1 and log["replies_given"][0].endswith("reply.wav")
    heard = read_wav(log["recording"])
    prompt = read_wav(PROMPT)
    found, offset, corr = contains(heard, prompt)
    assert found, corr
    assert offset / 8000 < 0.5
    span = heard[offset: offset + prompt.size]
    assert rms(span) > 1000 and rms(heard[:offset]) < 200

    # And our frames contain the resident's reply, after the prompt.
    ours = np.frombuffer(b"".join(frames), dtype="<i2")
    reply = read_wav(SIP_FIXTURES / "reply.wav")
    found, at, corr2 = contains(ours, reply)
    assert found, corr2
    assert at / 8000 > prompt.size / 8000  # after our prompt ended
    assert rms(ours[: 8000]) < 200  # silence while our prompt played


def test_chunks_hand_the_bridges_audio_over_in_one_event_each(phone, simulator) -> None:
    """``dial(chunks=True)`` (what a scripted call uses): one Frame per conference-bridge chunk
    (MEDIA_PTIME_MS, three 20 ms frames) instead of three — a third of the thread hand-offs —
    and the resident's reply arrives whole, after our prompt, as with 20 ms frames."""
    from callbot import defaults

    call = phone.dial(_uri(simulator, "1002"), chunks=True)
    _wait_for(call, Answered)
    call.play(PROMPT)
    got: list[bytes] = []
    end = time.monotonic() + 15
    while time.monotonic() < end:
        ev = call.events.get(timeout=5)
        if isinstance(ev, Frame):
            assert not ev.early
            got.append(ev.pcm)
        elif isinstance(ev, PlaybackEnded):
            end = min(end, time.monotonic() + 3.0)  # gap + reply delay + reply (1.4 s)
    call.hangup()
    res = call.wait(5)
    assert res.outcome == "answered"
    chunk = defaults.MEDIA_PTIME_MS // defaults.FRAME_MS * defaults.FRAME_BYTES
    assert {len(p) for p in got} == {chunk}, {len(p) for p in got}
    assert call.frames_received >= len(got) * chunk // defaults.FRAME_BYTES
    ours = np.frombuffer(b"".join(got), dtype="<i2")
    prompt, reply = read_wav(PROMPT), read_wav(SIP_FIXTURES / "reply.wav")
    found, at, corr = contains(ours, reply)
    assert found, corr
    assert at > prompt.size  # after our prompt ended


def test_callee_hangs_up_mid_prompt(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1003"))
    _wait_for(call, Answered)
    pid = call.play(PROMPT)
    ended = _wait_for(call, PlaybackEnded, 5)
    res = call.wait(5)
    assert ended.play_id == pid and ended.completed is False
    assert res.outcome == "answered" and res.hangup_by == "callee"
    assert 0.6 < res.talk_s < 1.8
    assert _log_for(simulator, "1003")["hung_up_mid_prompt"] is True


def test_ring_timeout_gives_no_answer(phone, simulator) -> None:
    t = time.monotonic()
    res = phone.dial(_uri(simulator, "1004"), ring_timeout=2).wait(10)
    assert res.outcome == "no_answer" and res.sip_code == 487
    assert time.monotonic() - t < 4


def test_answer_after_ringing(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1005"))
    _wait_for(call, Answered)
    call.hangup()
    res = call.wait(5)
    assert res.outcome == "answered" and 1.3 < res.ring_s < 2.5


@pytest.mark.parametrize(("number", "outcome", "code"), [
    ("1006", "busy", 486), ("1007", "rejected", 603)])
def test_busy_and_reject(phone, simulator, number, outcome, code) -> None:
    res = phone.dial(_uri(simulator, number)).wait(10)
    assert (res.outcome, res.sip_code) == (outcome, code)


def test_early_media_announcement_is_kept_then_the_call_fails(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1008"))
    res = call.wait(15)
    assert res.outcome == "invalid_number" and res.sip_code == 404
    early = np.frombuffer(call.early_media(), dtype="<i2")
    announce = read_wav(SIP_FIXTURES / "announce.wav")
    assert early.size > announce.size * 0.9
    found, _, corr = contains(early, announce)
    assert found, corr


def test_unreachable_port_fails_within_the_configured_timeout(phone) -> None:
    t = time.monotonic()
    res = phone.dial(f"sip:1001@127.0.0.1:{free_port()}").wait(15)
    assert res.outcome == "unreachable" and res.sip_code is None
    assert "no response" in res.reason
    assert time.monotonic() - t < 4  # response_timeout_s = 3 in the fixture, not 32 s


def test_four_concurrent_calls_spread_over_backends(phone, simulator) -> None:
    calls = [phone.dial(_uri(simulator, "1009")) for _ in range(4)]
    for c in calls:
        _wait_for(c, Answered)
    for c in calls:
        c.play(PROMPT)
    time.sleep(1.0)
    for c in calls:
        c.hangup()
    results = [c.wait(10) for c in calls]
    assert [r.outcome for r in results] == ["answered"] * 4
    time.sleep(0.5)
    recs = [Path(r["recording"]).name for r in read_call_log(simulator.record_dir)
            if r["number"] == "1009"]
    pids = {name.split("-")[1] for name in recs}
    assert len(recs) >= 4 and len(pids) == 2, recs
    assert str(os.getpid()) not in pids


def test_an_ended_calls_object_never_hangs_up_the_call_that_reuses_its_slot(phone, simulator) -> None:
    """pjsua2 deletes a Call by hanging up whatever call holds its slot id by then. An ended
    call's object dropped after pjsua had given its slot to a new call killed that call (seen in
    the 200-contact campaign: a resident who answers got 603, and the new call went deaf).
    Here the loop is slowed so the objects of the ended call outlive the reuse of its slot."""
    engine = phone._engine
    engine._bury = lambda: None  # a loop that has not dropped the ended call's objects yet
    try:
        assert phone.dial(_uri(simulator, "1006")).wait(10).outcome == "busy"
        # pjsua hands out its 4 slots round robin: the 4th of these gets the busy call's slot
        calls = [phone.dial(_uri(simulator, "1009")) for _ in range(4)]
        for c in calls:
            _wait_for(c, Answered)
        before = [c.frames_received for c in calls]
    finally:
        del engine._bury  # the next pass of the loop drops the objects of the ended call
    time.sleep(1.0)
    after = [c.frames_received for c in calls]
    assert all(n - b >= 40 for b, n in zip(before, after, strict=True)), (before, after)  # all live
    for c in calls:
        c.hangup()
    results = [c.wait(10) for c in calls]
    assert [(r.outcome, r.hangup_by, r.reason) for r in results] == [
        ("answered", "robot", "hangup by robot")] * 4


def test_max_call_length_hangs_up(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1012"), max_call_s=1.5)
    res = call.wait(10)
    assert res.outcome == "answered" and res.hangup_by == "robot"
    assert res.reason == "max call length" and 1.4 < res.talk_s < 2.5


def test_stop_playback_cuts_the_prompt_short(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1010"))
    _wait_for(call, Answered)
    pid = call.play(PROMPT)
    time.sleep(0.6)
    call.stop_playback()
    ended = _wait_for(call, PlaybackEnded, 2)
    assert (ended.play_id, ended.completed) == (pid, False)
    time.sleep(1.5)
    call.hangup()
    call.wait(5)
    log = _log_for(simulator, "1010")
    heard = read_wav(log["recording"])
    loud = [i for i in range(0, heard.size - 160, 160) if rms(heard[i:i + 160]) > 300]
    assert loud, "the resident heard nothing"
    spoken_s = (loud[-1] - loud[0]) / 8000
    assert 0.2 < spoken_s < 1.0  # the prompt is 2.1 s long; we stopped it after 0.6 s


def test_process_exits_cleanly_without_stop(simulator) -> None:
    import subprocess
    import sys

    script = (
        "import time\n"
        "from callbot.config import SipConfig\n"
        "from callbot.telephony import Phone\n"
        "p = Phone(SipConfig(bind='127.0.0.1', local_port=0, rtp_port=0))\n"
        "p.start()\n"
        f"c = p.dial('sip:1011@127.0.0.1:{simulator.port}')\n"
        "time.sleep(1.0)\n"
        f"c.play({str(PROMPT)!r})\n"
        "time.sleep(0.3)\n"
        "print('leaving', c.answered)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "leaving True"
    assert "Assertion" not in r.stderr and "Traceback" not in r.stderr


def test_early_frames_stream_the_announcement_while_ringing(phone, simulator) -> None:
    call = phone.dial(_uri(simulator, "1008"), early_frames=True)
    early = []
    while True:
        ev = call.events.get(timeout=15)
        if isinstance(ev, Frame):
            assert ev.early
            early.append(ev.pcm)
        if isinstance(ev, Disconnected):
            break
    assert call.result.outcome == "invalid_number"
    pcm = np.frombuffer(b"".join(early), dtype="<i2")
    assert contains(pcm, read_wav(SIP_FIXTURES / "announce.wav"))[0]
    assert b"".join(early) == call.early_media()


def test_whole_call_recording_holds_both_sides(phone, simulator, tmp_path) -> None:
    call = phone.dial(_uri(simulator, "1002"))
    _wait_for(call, Answered)
    call.record(tmp_path / "call.wav", ours=True)
    call.play(PROMPT)
    _wait_for(call, PlaybackEnded)
    time.sleep(3.0)
    call.hangup()
    res = call.wait(5)
    assert res.extra["recording"] == str(tmp_path / "call.wav")
    rec = read_wav(tmp_path / "call.wav")  # complete as soon as the call is over
    found_prompt, at_prompt, _ = contains(rec, read_wav(PROMPT))
    found_reply, at_reply, _ = contains(rec, read_wav(SIP_FIXTURES / "reply.wav"))
    assert found_prompt and found_reply and at_reply > at_prompt


def test_a_backend_that_dies_is_started_again(phone, tmp_path) -> None:
    import shutil as sh
    import signal

    from callbot.residents import Simulator
    from tests.telephony.conftest import PERSONAS

    sh.copy(SIP_FIXTURES / "reply.wav", tmp_path / "reply.wav")
    sh.copy(SIP_FIXTURES / "announce.wav", tmp_path / "announce.wav")
    (tmp_path / "p.yaml").write_text(PERSONAS, encoding="utf-8")
    with Simulator(str(tmp_path / "p.yaml"), str(tmp_path / "rec"), port=free_port(),
                   procs=2) as sim:
        victim = sim._children[0].pid
        os.kill(victim, signal.SIGKILL)
        end = time.monotonic() + 20
        while (sim.restarts == 0 or not sim.alive() or sim.backend_ports[0] == 0) \
                and time.monotonic() < end:
            time.sleep(0.1)
        assert sim.restarts == 1 and sim.alive() and sim._children[0].pid != victim
        calls = [phone.dial(_uri(sim, "1006")) for _ in range(4)]  # busy: answers at once
        assert [c.wait(10).outcome for c in calls] == ["busy"] * 4
