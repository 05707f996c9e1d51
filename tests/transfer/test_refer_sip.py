"""转人工 by SIP REFER (``[calls] transfer = refer``): a PBX that takes transfers (SIPp) answers,
the resident presses 1 for a person, the robot says its line and sends REFER to the duty phone;
the PBX reports the duty phone answered and the robot's leg ends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from callbot.config import SipConfig
from tests.campaign.conftest import need_real_call_parts
from tests.conftest import FIXTURES, REPLIES, free_port

pytestmark = [pytest.mark.sip, pytest.mark.speech]
SCRIPT = str(Path(__file__).with_name("ask_transfer.yaml"))


def test_refer_hands_the_resident_to_the_pbx(tmp_path: Path) -> None:
    need_real_call_parts()
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.skip("sipp is not installed (scripts/setup installs it)")
    from callbot.config import load_settings
    from callbot.session import run_call
    from callbot.speech.asr import load_asr
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone
    from callbot.transfer import TransferPlan

    shutil.copy(FIXTURES / "sip" / "uas_refer.xml", tmp_path / "uas_refer.xml")
    # the resident's reply as SIPp streams it: μ-law, after 2 s of the robot's question
    subprocess.run(["sox", "-R", str(REPLIES / "shide.wav"), "-r", "8000", "-c", "1", "-e",
                    "u-law", str(tmp_path / "reply_ulaw.wav"), "pad", "2", "3"], check=True)
    port = free_port(socket.SOCK_DGRAM)
    log = tmp_path / "messages.log"
    proc = subprocess.Popen(
        [sipp, "-sf", "uas_refer.xml", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
         "-mp", str(free_port()), "-nostdin", "-m", "1", "-trace_msg", "-message_file",
         str(log), "-t", "u1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        settings = load_settings({"CALLBOT_DATA_DIR": str(tmp_path / "var"),
                                  "CALLBOT_TTS_ENGINE": "espeak"})
        conf = replace(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                                 dial_uri=f"sip:{{number}}@127.0.0.1:{port}"), transfer="refer")
        with Phone(conf) as phone:
            rep = run_call(phone, "13800000001", SCRIPT, {"姓名": "陈奶奶"}, make_tts(settings),
                           load_asr(settings), tts_rate="+40%",
                           transfer=TransferPlan(to="88880001", timeout_s=10, method="refer"))
        assert proc.wait(15) == 0, "the SIPp scenario did not run to its end"
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rep.ended == "transfer" and rep.answers == {"asked": True}
    assert rep.transfer is not None
    assert (rep.transfer["method"], rep.transfer["answered"], rep.transfer["to"]) == (
        "refer", True, "88880001")
    assert rep.result.hangup_by == "robot"
    sent = log.read_text("utf-8", "replace")
    refer = sent[sent.index("REFER sip:"):]
    assert f"Refer-To: <sip:88880001@127.0.0.1:{port}>" in refer or \
        f"Refer-To: sip:88880001@127.0.0.1:{port}" in refer, refer[:600]
    assert any(line["text"].startswith("好的，正在为您转接") for line in rep.transcript)
