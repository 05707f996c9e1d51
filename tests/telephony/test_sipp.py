"""Real calls against SIPp as the UAS (answer with an RTP stream, 486, 404, no answer)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from callbot.telephony import Answered, Disconnected, Frame, Ringing

pytestmark = pytest.mark.sip


def _drain(call, timeout: float = 20.0) -> list:
    events = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ev = call.events.get(timeout=end - time.monotonic())
        events.append(ev)
        if isinstance(ev, Disconnected):
            return events
    raise AssertionError("no Disconnected event")


def test_answered_call_streams_the_callees_audio_as_20ms_frames(phone, sipp) -> None:
    port = sipp("uas_answer_rtp.xml")
    call = phone.dial(f"sip:100@127.0.0.1:{port}")
    events = _drain(call)
    kinds = [type(e) for e in events]
    assert kinds.index(Ringing) < kinds.index(Answered) < kinds.index(Frame)
    frames = [e.pcm for e in events if isinstance(e, Frame)]
    assert all(len(f) == 320 for f in frames)
    res = call.wait(1)
    assert res.outcome == "answered" and res.sip_code == 200
    assert res.hangup_by == "callee"
    assert 2.0 < res.talk_s < 3.5 and 0.2 < res.ring_s < 1.5
    assert abs(len(frames) / res.talk_s - 50) < 6  # 50 frames a second
    # SIPp streams a 440 Hz tone: it must be what we hear.
    pcm = np.frombuffer(b"".join(frames[10:60]), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    peak_hz = np.argmax(spectrum) * 8000 / len(pcm)
    assert abs(peak_hz - 440) < 10
    assert np.sqrt(np.mean(pcm ** 2)) > 2000


def test_tcp_transport(sipp, sip_conf) -> None:
    from dataclasses import replace

    from callbot.telephony import Phone

    port = sipp("uas_answer_rtp.xml", transport="tcp")
    with Phone(replace(sip_conf, transport="tcp")) as phone:
        call = phone.dial(f"sip:100@127.0.0.1:{port}")
        assert call.uri.endswith(";transport=tcp")
        res = call.wait(15)
    assert res.outcome == "answered" and res.hangup_by == "callee"
    assert res.extra["frames"] > 100


def test_robot_hangup_is_reported_as_robot(phone, sipp, tmp_path) -> None:
    port = sipp("uas_answer_rtp.xml")
    call = phone.dial(f"sip:100@127.0.0.1:{port}")
    while not isinstance(call.events.get(timeout=10), Answered):
        pass
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match="not a WAV file"):
        call.play(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        call.play(tmp_path / "missing.wav")
    time.sleep(0.5)
    call.hangup()
    res = call.wait(5)
    assert res.outcome == "answered" and res.hangup_by == "robot"
    assert res.talk_s < 1.5


@pytest.mark.parametrize(("code", "reason", "outcome"), [
    (486, "Busy Here", "busy"),
    (404, "Not Found", "invalid_number"),
    (603, "Decline", "rejected"),
    (480, "Temporarily Unavailable", "unreachable"),
])
def test_final_responses_map_to_outcomes(phone, sipp, code, reason, outcome) -> None:
    port = sipp("uas_reply.xml", {"[code] [reason]": f"{code} {reason}"})
    res = phone.dial(f"sip:100@127.0.0.1:{port}").wait(10)
    assert (res.outcome, res.sip_code, res.reason) == (outcome, code, reason)
    assert res.hangup_by is None and res.talk_s == 0


def test_no_answer_is_cancelled_by_our_ring_timeout(phone, sipp) -> None:
    port = sipp("uas_no_answer.xml")
    t = time.monotonic()
    res = phone.dial(f"sip:100@127.0.0.1:{port}", ring_timeout=2).wait(10)
    assert res.outcome == "no_answer" and res.sip_code == 487
    assert 1.9 < time.monotonic() - t < 4 and 1.9 < res.ring_s < 3


def test_the_fifth_call_in_one_process_is_refused_clearly(phone, sipp) -> None:
    from callbot.exceptions import TooManyCallsError

    port = sipp("uas_no_answer.xml")
    calls = [phone.dial(f"sip:10{i}@127.0.0.1:{port}", ring_timeout=3) for i in range(4)]
    with pytest.raises(TooManyCallsError, match="at most 4"):
        phone.dial(f"sip:105@127.0.0.1:{port}")
    for c in calls:
        c.hangup()
    for c in calls:
        c.wait(10)


def test_the_media_clock_thread_keeps_its_python_thread_state(phone, sipp) -> None:
    """pjmedia's clock thread calls into Python once a bridge tick per call; its thread state
    (and so its thread-local data) lives from one callback to the next instead of being
    created and deleted each time (an mmap and munmap per callback, most of that thread's
    system time)."""
    import threading

    local = threading.local()
    counts: list[int] = []
    idents: set[int] = set()

    def on_frame(pcm: bytes) -> None:  # the clock thread
        local.n = getattr(local, "n", 0) + 1
        counts.append(local.n)
        idents.add(threading.get_ident())

    port = sipp("uas_answer_rtp.xml")
    call = phone.dial(f"sip:100@127.0.0.1:{port}", on_frame=on_frame)
    res = call.wait(20)
    assert res.outcome == "answered" and res.extra["frames"] > 100
    assert len(counts) == res.extra["frames"]  # every frame reached the callback
    assert idents and threading.get_ident() not in idents
    # one thread state across all its callbacks: its thread-local count never starts over
    assert counts == list(range(1, len(counts) + 1))


def _switches(tid: int) -> int:
    from pathlib import Path

    status = Path(f"/proc/self/task/{tid}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def test_the_loop_thread_of_an_idle_phone_sleeps_long(phone) -> None:
    """With no call (or only answered ones going on) the pjsua2 loop wakes about twice a
    second, not ten times: each wake-up of each line process costs CPU."""
    tid = phone._engine._thread.native_id
    time.sleep(0.3)
    before = _switches(tid)
    time.sleep(3.0)
    assert _switches(tid) - before <= 10  # ~6 at IDLE_WAIT_MS; ~30 at LOOP_WAIT_MS
    res = phone.dial("sip:100@127.0.0.1:9").wait(10)  # and a call still ends on time
    assert res.outcome == "unreachable" and res.ring_s < 4.5  # response_timeout_s 3


def test_a_talking_phone_wakes_once_a_bridge_tick_and_hears_every_frame(phone, sipp) -> None:
    """RTP is read and the conference bridge ticks on one thread that wakes once a tick
    (MEDIA_PTIME_MS, 60 ms): pjmedia's own media thread woke for every packet and every 10 ms
    (~100 a second for one call), its clock thread 17 times more. Each wake-up costs a line
    process CPU; the callee's audio must still come whole and in order."""
    import os
    import threading
    from pathlib import Path

    def switches() -> dict[str, int]:
        main = threading.main_thread().native_id
        return {t: _switches(int(t)) for t in os.listdir("/proc/self/task") if int(t) != main}

    got: list[bytes] = []
    port = sipp("uas_answer_rtp.xml")
    call = phone.dial(f"sip:100@127.0.0.1:{port}", on_frame=got.append)
    end = time.monotonic() + 5
    while not call.answered and time.monotonic() < end:
        time.sleep(0.01)
    time.sleep(0.3)
    before = switches()
    time.sleep(1.5)
    after = switches()
    res = call.wait(10)
    woke = sum(n - before[t] for t, n in after.items() if t in before)
    names = {Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in after
             if Path(f"/proc/self/task/{t}").exists()}
    assert "media" not in names and "clock" not in names  # pjmedia's threads are not running
    assert woke <= 45, (woke, names)  # 25 ticks + the pjsua2 loop; ~180 with pjmedia's threads
    assert res.outcome == "answered" and res.extra["frames"] == len(got)
    assert abs(len(got) - res.talk_s * 50) <= 6  # every 20 ms frame of the talk time
    pcm = np.frombuffer(b"".join(got[10:60]), dtype="<i2").astype(float)
    assert abs(np.argmax(np.abs(np.fft.rfft(pcm))) * 8000 / len(pcm) - 440) < 10


def test_the_media_clock_of_an_idle_phone_only_ticks(phone, sipp) -> None:
    """Without a call there is no media socket, and pjlib's poll of an empty ioqueue sleeps
    (a second wake-up each tick, ~20 µs CPU): the idle clock only ticks, ~17 times a second.
    A call placed after that still hears its callee (the poll comes back with the call)."""
    import os
    from pathlib import Path

    def clock_switches() -> int:
        for t in os.listdir("/proc/self/task"):
            if Path(f"/proc/self/task/{t}/comm").read_text().strip() == "media-clock":
                return _switches(int(t))
        raise AssertionError("no media-clock thread")

    time.sleep(0.3)
    before = clock_switches()
    time.sleep(3.0)
    assert clock_switches() - before <= 60  # 50 ticks; 100 when it polls an empty ioqueue
    port = sipp("uas_answer_rtp.xml")
    res = phone.dial(f"sip:100@127.0.0.1:{port}").wait(15)
    assert res.outcome == "answered" and abs(res.extra["frames"] - res.talk_s * 50) <= 6
