"""A SIP phone not written here (issue 11): Debian's baresip auto-answers the robot, on PCMU and
on PCMA, playing a resident's reply from a WAV (its ``aufile`` source) and hanging up (BYE) when
the file ends. PCMU: keys pressed on baresip reach the robot (RFC 4733), BYE from baresip; the
robot's keys reach baresip (``callbot call URI转,47``: an extension sent after the answer). PCMA:
the robot runs a template, understands the reply and hangs up itself (BYE from the robot)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPLIES, callbot_cmd, env_for_subprocess, free_port

pytestmark = [pytest.mark.sip]

ASK = """\
name: ask
fields:
  need_masks: bool
steps:
  ask:
    ask: "要口罩吗？"
    answers:
      yes: {set: {need_masks: true}, say: "好的，再见。", end: completed}
      no: {set: {need_masks: false}, say: "好的，再见。", end: completed}
"""


def _baresip(tmp: Path, codec: str, keys: str = "", tail_s: float = 3.0
             ) -> Iterator[tuple[int, subprocess.Popen]]:
    binary = shutil.which("baresip")
    if binary is None:
        pytest.skip("baresip is not installed (scripts/setup installs it)")
    port = free_port()
    rtp = 20000 + port % 20000 // 2 * 2  # an even range of its own, clear of SIP ports
    wav = tmp / "reply.wav"
    # the reply 1.5 s after the answer (after the robot's short question), then *tail_s* of
    # silence, then baresip hangs up
    subprocess.run(["sox", str(REPLIES / "xuyao.wav"), str(wav), "pad", "1.5", str(tail_s)],
                   check=True)
    (tmp / "config").write_text(
        f"sip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\naudio_source aufile,{wav}\n"
        "audio_player aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\n"
        + "".join(f"module {m}.so\n" for m in ("g711", "aufile", "account", "menu", "stdio"))
        + f"rtp_ports {rtp}-{rtp + 40}\n", encoding="utf-8")
    (tmp / "accounts").write_text(
        f"<sip:100@127.0.0.1>;regint=0;answermode=auto;audio_codecs={codec}\n", encoding="utf-8")
    p = subprocess.Popen([binary, "-f", str(tmp)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, cwd=tmp)
    assert p.stdout is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = p.stdout.readline().decode(errors="replace")
        if "baresip is ready" in line:
            break
    else:
        p.kill()
        pytest.fail("baresip did not start")
    try:
        yield port, p
    finally:
        p.kill()
        p.wait(5)


def test_pcmu_keys_from_baresip_reach_the_robot_and_baresip_hangs_up(tmp_path, sip_conf) -> None:
    pytest.importorskip("pjsua2")
    from dataclasses import replace

    from callbot.telephony import Answered, Disconnected, Frame, Phone

    gen = _baresip(tmp_path, "PCMU")
    port, proc = next(gen)
    try:
        with Phone(replace(sip_conf, codecs=("PCMU",))) as phone:
            call = phone.dial(f"sip:100@127.0.0.1:{port}")
            frames, pressed = 0, False
            while True:
                ev = call.events.get(timeout=20)
                if isinstance(ev, Answered):
                    time.sleep(0.3)
                    assert proc.stdin is not None
                    proc.stdin.write(b"5")  # keys typed on the phone during the call
                    proc.stdin.flush()
                    time.sleep(0.6)
                    proc.stdin.write(b"#")
                    proc.stdin.flush()
                    pressed = True
                elif isinstance(ev, Frame):
                    frames += 1
                elif isinstance(ev, Disconnected):
                    break
        res = ev.result
        assert pressed and res.outcome == "answered", res
        assert res.dtmf == "5#"
        assert res.hangup_by == "callee"  # baresip's BYE at the end of its file
        assert frames > 150  # ~5 s of its audio arrived
    finally:
        next(gen, None)


def test_the_robots_keys_reach_baresip(tmp_path, sip_conf) -> None:
    """DTMF from the robot to a phone not written here: ``callbot call`` with an extension
    (``转,47``: a pause, then 4 and 7) sends RFC 4733 events after the answer; baresip's own log
    shows it received exactly those keys."""
    pytest.importorskip("pjsua2")
    gen = _baresip(tmp_path, "PCMU")
    port, proc = next(gen)
    (tmp_path / "sip.conf").write_text(
        "[account]\nbind = 127.0.0.1\nlocal_port = 0\n[media]\nrtp_port = 0\ncodecs = PCMU\n"
        "[calls]\nextension_delay = 0.5\nextension_pause = 0.5\n", encoding="utf-8")
    try:
        r = subprocess.run(callbot_cmd("call", f"sip:100@127.0.0.1:{port}转,47", "--sip-conf",
                                       str(tmp_path / "sip.conf"), "--listen", "0.5", "--json"),
                           capture_output=True, text=True, timeout=60, env=env_for_subprocess())
    finally:
        next(gen, None)  # baresip stopped: its whole log can be read
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "answered"
    assert proc.stdout is not None
    log = proc.stdout.read().decode(errors="replace")
    # baresip 1.0 logs "received event: '4' (end=0)" when an RFC 4733 key starts (and its end
    # only once the next key starts: the last key's end is never logged, seen even 1.5 s later)
    assert re.findall(r"received event: '(.)' \(end=0\)", log) == ["4", "7"], log[-2000:]


def test_pcma_reply_is_understood_and_the_robot_hangs_up(tmp_path, sip_conf) -> None:
    pytest.importorskip("pjsua2")
    pytest.importorskip("sherpa_onnx")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from dataclasses import replace

    from callbot.config import load_settings
    from callbot.session import run_call
    from callbot.speech.asr import load_asr
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone

    (tmp_path / "ask.yaml").write_text(ASK, encoding="utf-8")
    tts = make_tts(load_settings({"CALLBOT_DATA_DIR": str(tmp_path / "var")}), engine="espeak")
    asr = load_asr("pinyin")
    # the resident stays on the line through the robot's goodbye (好的，再见。感谢您的配合，再见。
    # 2.3 s at +40%, from ~0.6 s after the reply): with 3 s of silence after the reply baresip hung
    # up 0.05 s after the goodbye's planned end, so any delay (a loaded box) made it hang up
    # first, in the middle of the goodbye
    gen = _baresip(tmp_path, "PCMA", tail_s=6.0)
    port, _proc = next(gen)
    try:
        with Phone(replace(sip_conf, codecs=("PCMA",))) as phone:
            rep = run_call(phone, f"sip:100@127.0.0.1:{port}", tmp_path / "ask.yaml", {}, tts,
                           asr, tts_rate="+40%")
    finally:
        next(gen, None)
    assert rep.outcome == "answered" and rep.answers == {"need_masks": True}, rep.transcript
    assert rep.ended == "completed" and rep.result.hangup_by == "robot", (
        rep.result.talk_s, rep.timings, rep.transcript)
