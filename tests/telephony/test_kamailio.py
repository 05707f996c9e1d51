"""Registration with digest auth and a call relayed through Kamailio (registrar + proxy)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from callbot.config import SipConfig
from callbot.exceptions import RegistrationError
from callbot.residents import read_call_log
from callbot.telephony import Answered, Phone
from callbot.telephony.audio import contains, read_wav
from tests.conftest import free_port
from tests.telephony.conftest import SIP_FIXTURES

pytestmark = pytest.mark.sip
pytest.importorskip("pjsua2")
PASSWORD = "s3cret-居委会"


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, simulator) -> Iterator[int]:
    binary = shutil.which("kamailio") or shutil.which("kamailio", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.skip("kamailio is not installed (scripts/setup installs it)")
    d = tmp_path_factory.mktemp("kamailio")
    port = free_port()
    cfg = (SIP_FIXTURES / "kamailio.cfg").read_text()
    cfg = cfg.replace("@PORT@", str(port)).replace("@PASSWORD@", PASSWORD)
    cfg = cfg.replace("@TARGET@", f"127.0.0.1:{simulator.port}")
    (d / "kamailio.cfg").write_text(cfg, encoding="utf-8")
    log = (d / "kamailio.log").open("w")
    p = subprocess.Popen([binary, "-f", str(d / "kamailio.cfg"), "-DD", "-E", "-Y", str(d),
                          "-P", str(d / "kamailio.pid")], stdout=log, stderr=log,
                         start_new_session=True)
    time.sleep(1.0)
    if p.poll() is not None:
        pytest.fail("kamailio did not start:\n" + (d / "kamailio.log").read_text()[-2000:])
    try:
        yield port
    finally:
        # kamailio forks its workers into the session we gave it: stop them all
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def _conf(port: int, password: str, timeout: float = 5) -> SipConfig:
    return SipConfig(mode="register", registrar=f"sip:127.0.0.1:{port}", domain="127.0.0.1",
                     username="callbot", password=password, bind="127.0.0.1", local_port=0,
                     rtp_port=0, register_timeout_s=timeout, dial_uri=f"sip:{{number}}@127.0.0.1:{port}",
                     response_timeout_s=5)


def test_register_and_call_relayed_through_the_proxy(kamailio, simulator) -> None:
    with Phone(_conf(kamailio, PASSWORD)) as phone:
        call = phone.dial("1002")  # the dial pattern sends it to Kamailio, which relays it
        assert call.uri == f"sip:1002@127.0.0.1:{kamailio}"
        while not isinstance(call.events.get(timeout=10), Answered):
            pass
        call.play(SIP_FIXTURES / "prompt.wav")
        time.sleep(2.8)
        call.hangup()
        res = call.wait(5)
    assert res.outcome == "answered" and res.hangup_by == "robot"
    time.sleep(0.3)
    rec = [r for r in read_call_log(simulator.record_dir) if r["number"] == "1002"][-1]
    found, _, corr = contains(read_wav(rec["recording"]), read_wav(SIP_FIXTURES / "prompt.wav"))
    assert found, corr


def test_wrong_password_is_a_clear_registration_error(kamailio) -> None:
    with pytest.raises(RegistrationError) as ei:
        Phone(_conf(kamailio, "wrong")).start()
    assert ei.value.code == 401
    assert "用户名或密码错误" in str(ei.value) and "wrong username or password" in str(ei.value)
    # The failed Phone released the process's Endpoint: a new one starts fine.
    with Phone(_conf(kamailio, PASSWORD)) as phone:
        assert phone.running


def test_forbidden_account_is_a_clear_registration_error(kamailio) -> None:
    from dataclasses import replace

    with pytest.raises(RegistrationError) as ei:
        Phone(replace(_conf(kamailio, PASSWORD), username="blocked")).start()
    assert ei.value.code == 403 and "注册被拒绝 403" in str(ei.value)


def test_registrar_that_does_not_answer_times_out_clearly() -> None:
    port = free_port()
    t = time.monotonic()
    with pytest.raises(RegistrationError, match="注册超时.*within 2 s"):
        Phone(_conf(port, PASSWORD, timeout=2)).start()
    assert time.monotonic() - t < 4
