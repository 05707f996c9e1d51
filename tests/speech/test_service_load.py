"""The host's speech process under a burst: 100 replies ending at once (a 100-line campaign
whose residents all answer the same question together) are all decoded right, and no line waits
without word from the process for longer than its liveness timeout (keep-alives while a reply
waits its turn). A stopped speech process turns the reply into one heard as nothing: on a real
call the question is asked again and the call ends with a classified outcome, not a crash."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from callbot.speech.audio import read_8k
from tests.conftest import REPLIES, env_for_subprocess, free_port
from tests.speech.conftest import final_of, run_stream

pytestmark = [pytest.mark.speech]

BURST = 100


def _start(data: Path, kws_model_dir: Path, decoders: int) -> tuple[subprocess.Popen, str]:
    from callbot.config import load_settings
    from callbot.speech.service import address_for, ping

    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data),
                             CALLBOT_MODELS_DIR=str(kws_model_dir.parent),
                             CALLBOT_SPEECH_DECODERS=str(decoders))
    address = address_for(load_settings(env).data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "callbot.speech.service"], env=env)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "the speech process exited"
        try:
            ping(address, 1.0)
            return proc, address
        except Exception:
            assert time.monotonic() < deadline, "the speech process never answered"
            time.sleep(0.2)


@pytest.fixture()
def speech_process(tmp_path: Path, kws_model_dir: Path) -> Iterator[str]:
    proc, address = _start(tmp_path / "var", kws_model_dir, decoders=2)
    try:
        yield address
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def test_a_burst_of_replies_is_all_heard_and_no_line_waits_unheard(speech_process) -> None:
    """100 replies end together. Each line allows the process 2 s of silence (the process
    needs several CPU-seconds for the whole burst, so without keep-alives the last would time
    out) and gets the right answer."""
    from callbot.speech.service import RemoteAsr

    clips = {"xuyao.wav": "需要", "buxuyao.wav": "不需要"}
    pcm = {c: read_8k(REPLIES / c) for c in clips}
    remote = RemoteAsr(speech_process, timeout_s=2.0, result_max_s=120.0)
    assert remote.name == "pinyin"

    def one(i: int) -> tuple[str, str | None, float]:
        clip = list(clips)[i % 2]
        stream = remote.stream(["需要", "不需要"], trailing_silence_s=0.3)
        t0 = time.monotonic()
        ev = final_of(run_stream(stream, pcm[clip], lead_s=0.3, tail_s=1.0))
        return clip, getattr(ev, "match", None), time.monotonic() - t0

    with ThreadPoolExecutor(BURST) as pool:
        got = list(pool.map(one, range(BURST)))
    wrong = [(clip, match) for clip, match, _ in got if match != clips[clip]]
    assert not wrong, wrong
    print(f"burst of {BURST}: slowest reply {max(t for *_, t in got):.1f} s (load "
          f"{os.getloadavg()[0]:.1f})")


def test_a_stopped_process_fails_the_reply_in_bounded_time(speech_process) -> None:
    """A speech process that stops answering (SIGSTOP) gives one SpeechError at the end of the
    reply after the liveness timeout, not a hang; endpointing went on locally meanwhile."""
    from callbot.exceptions import SpeechError
    from callbot.speech.service import RemoteAsr, ping

    remote = RemoteAsr(speech_process, timeout_s=1.0, result_max_s=5.0)
    pid = _pid_of(speech_process)
    os.kill(pid, signal.SIGSTOP)
    try:
        stream = remote.stream(["需要"], trailing_silence_s=0.3)
        t0 = time.monotonic()
        with pytest.raises(SpeechError, match="语音服务"):
            run_stream(stream, read_8k(REPLIES / "xuyao.wav"))
        assert time.monotonic() - t0 < 4.0
        assert stream.done
    finally:
        os.kill(pid, signal.SIGCONT)
    assert ping(speech_process)["engine"] == "pinyin"


def _pid_of(address: str) -> int:
    """The pid of the process serving *address* (SO_PEERCRED of a hello connection)."""
    import socket
    import struct

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(address)
        pid, _, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
        conn.sendall(b'{"hello": 1}\n')
        conn.recv(4096)
    return int(pid)


SCRIPT = """name: ask_once
title: 问一次
rate: "+40%"
fields:
  need_masks: bool
handlers:
  no_match: {say: "没听清。", retries: 1}
start: ask
steps:
  ask:
    ask: "要口罩吗？"
    answers:
      yes: {set: {need_masks: true}, next: bye}
      no: {set: {need_masks: false}, next: bye}
  bye:
    say: "好，再见。"
    end: completed
"""


@pytest.mark.sip
def test_a_call_whose_reply_cannot_be_decoded_asks_again_and_ends_classified(
        speech_process, tmp_path: Path) -> None:
    """A real call (pjsua2 → resident simulator) on a stopped speech process: the resident's
    replies cannot be decoded, the robot asks again, the call ends as no_match with the
    answered outcome — the attempt is classified, nothing crashes."""
    pytest.importorskip("pjsua2")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    from callbot.config import SipConfig, load_settings
    from callbot.residents import Simulator
    from callbot.session import run_call
    from callbot.speech.service import RemoteAsr
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone

    script = tmp_path / "ask.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    personas = tmp_path / "personas.yaml"
    clip = str(REPLIES / "xuyao.wav")
    personas.write_text("residents:\n  - {number: \"2101\", behaviour: answer, replies: "
                        f"[\"{clip}\", \"{clip}\", \"{clip}\", \"{clip}\"]}}\n", encoding="utf-8")
    sim = Simulator(str(personas), str(tmp_path / "rec"), port=free_port(), procs=1)
    sim.start()
    tts = make_tts(load_settings({"CALLBOT_DATA_DIR": str(tmp_path / "tts")}), engine="espeak")
    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3))
    phone.start()
    asr = RemoteAsr(speech_process, timeout_s=0.5, result_max_s=1.0)
    pid = _pid_of(speech_process)
    os.kill(pid, signal.SIGSTOP)
    try:
        rep = run_call(phone, f"sip:2101@127.0.0.1:{sim.port}", script, {}, tts, asr)
    finally:
        os.kill(pid, signal.SIGCONT)
        phone.stop()
        sim.stop()
    assert rep.outcome == "answered"
    assert rep.ended == "no_match", rep.ended
    assert len(rep.timings["speech_errors"]) == 2  # the question was asked again
    assert [t["text"] for t in rep.transcript if t["role"] == "bot"][:3] == [
        "要口罩吗？", "没听清。", "要口罩吗？"]
    assert rep.answers.get("need_masks") is None
