"""SIP over TLS: a real call to a pjsua2 callee listening with a certificate made here (openssl),
with the server's certificate verified against [account] tls_ca_file, refused when it does not
verify, and answered with a warning when no CA file is configured."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.telephony.conftest import SIP_FIXTURES, _need

pytestmark = [pytest.mark.sip]


def _cert(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key."""
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    subprocess.run([_need("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                    "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_callee(tmp_path: Path) -> Iterator[Callable[[], tuple[int, Path]]]:
    """Start the TLS callee; returns (port, the certificate it presents)."""
    pytest.importorskip("pjsua2")
    procs: list[subprocess.Popen] = []

    def start() -> tuple[int, Path]:
        cert, key = _cert(tmp_path / "server", "server")
        port = free_port(socket.SOCK_STREAM)
        proc = subprocess.Popen([sys.executable, str(SIP_FIXTURES / "tls_uas.py"), str(port),
                                 str(cert), str(key)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # pjlib's start-up lines come first
            seen.append(line)
            if line.strip() == "ready":
                return port, cert
        raise AssertionError("TLS callee did not start:\n" + "".join(seen))

    yield start
    for p in procs:
        p.kill()
        p.wait(5)


def test_tls_call_with_the_servers_certificate_verified(tls_callee, sip_conf) -> None:
    from callbot.telephony import Phone

    port, cert = tls_callee()
    with Phone(replace(sip_conf, transport="tls", tls_ca_file=str(cert))) as phone:
        call = phone.dial(f"sip:100@127.0.0.1:{port}")
        assert call.uri.endswith(";transport=tls")
        res = call.wait(15)
    assert (res.outcome, res.sip_code, res.hangup_by) == ("answered", 200, "callee")
    assert 1.5 < res.talk_s < 3.5 and res.extra["frames"] > 50  # media flowed for the 2 s


def test_a_certificate_that_does_not_verify_is_refused(tls_callee, sip_conf, tmp_path) -> None:
    from callbot.telephony import Phone

    port, _cert_of_server = tls_callee()
    other_ca, _ = _cert(tmp_path / "other", "other")
    with Phone(replace(sip_conf, transport="tls", tls_ca_file=str(other_ca))) as phone:
        res = phone.dial(f"sip:100@127.0.0.1:{port}").wait(15)
    assert (res.outcome, res.sip_code) == ("unreachable", 503), res
    assert "certificate" in res.reason.lower()  # the log says why: PJSIP_TLS_ECERTVERIF
    assert res.talk_s == 0 and res.answered_at is None


def test_tls_without_a_ca_file_warns_and_calls(tls_callee, sip_conf, caplog) -> None:
    from callbot.telephony import Phone

    port, _ = tls_callee()
    with caplog.at_level(logging.WARNING, logger="callbot.telephony"):
        with Phone(replace(sip_conf, transport="tls")) as phone:
            res = phone.dial(f"sip:100@127.0.0.1:{port}").wait(15)
    assert "tls_ca_file" in caplog.text
    assert res.outcome == "answered"


def test_sip_conf_tls_ca_file_is_checked(tmp_path) -> None:
    from callbot.config import load_sip_conf
    from callbot.exceptions import ConfigError

    ca, _ = _cert(tmp_path / "ca", "pbx-ca")
    conf = tmp_path / "sip.conf"
    conf.write_text("[account]\ntransport = tls\ntls_ca_file = ca/pbx-ca.pem\n", encoding="utf-8")
    assert load_sip_conf(conf).tls_ca_file == str(ca)  # relative to the sip.conf
    conf.write_text("[account]\ntransport = tls\ntls_ca_file = missing.pem\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tls_ca_file.*no such file"):
        load_sip_conf(conf)
    conf.write_text(f"[account]\ntransport = udp\ntls_ca_file = {ca}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="only used with transport = tls"):
        load_sip_conf(conf)
