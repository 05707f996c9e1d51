"""SIP peers for the telephony tests: SIPp, Kamailio, the resident simulator; all on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, free_port

SIP_FIXTURES = FIXTURES / "sip"


def _need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (scripts/setup installs it)")
    return path


@pytest.fixture
def sip_conf(tmp_path: Path):
    """A direct-trunk SipConfig for the robot side, bound to 127.0.0.1."""
    from callbot.config import SipConfig

    return SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                     ring_timeout_s=10, response_timeout_s=3)


@pytest.fixture
def phone(sip_conf) -> Iterator:
    pytest.importorskip("pjsua2")
    from callbot.telephony import Phone

    ph = Phone(sip_conf)
    ph.start()
    try:
        yield ph
    finally:
        ph.stop()


def _listening(port: int, transport: str) -> bool:
    """Is something bound to 127.0.0.1:port? (read from /proc, without touching the port)"""
    table = Path("/proc/net/tcp" if transport == "tcp" else "/proc/net/udp")
    want = f"0100007F:{port:04X}"
    return any(line.split()[1] == want for line in table.read_text().splitlines()[1:])


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start SIPp as a UAS with a scenario (text may be rewritten); returns its SIP port."""
    binary = _need("sipp")
    procs: list[subprocess.Popen] = []

    def start(scenario: str, replace: dict[str, str] | None = None, transport: str = "udp") -> int:
        text = (SIP_FIXTURES / scenario).read_text()
        for k, v in (replace or {}).items():
            text = text.replace(k, v)
        sf = tmp_path / scenario
        sf.write_text(text)
        shutil.copy(SIP_FIXTURES / "tone_ulaw.wav", tmp_path / "tone_ulaw.wav")
        port = free_port(socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM)
        p = subprocess.Popen(
            [binary, "-sf", str(sf), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
             "-mp", str(free_port()), "-nostdin", "-m", "1", "-trace_err",
             "-t", "t1" if transport == "tcp" else "u1"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until SIPp holds its port
            assert p.poll() is None, "SIPp did not start"
            if _listening(port, transport):
                return port
            time.sleep(0.05)
        raise AssertionError("SIPp did not open its port")

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


PERSONAS = """
residents:
  - {number: "1001", behaviour: answer, replies: [dtmf:1, "dtmf:2#", dtmf:3], after_replies: hangup}
  - {number: "1002", behaviour: answer, replies: [reply.wav]}
  - {number: "1003", behaviour: hangup_mid_prompt, hangup_after_s: 0.8}
  - {number: "1004", behaviour: no_answer}
  - {number: "1005", behaviour: answer, ring_s: 1.5}
  - {number: "1006", behaviour: busy}
  - {number: "1007", behaviour: reject}
  - {number: "1008", behaviour: early_media_fail, announcement: announce.wav, code: 404}
  - {number: "1009", behaviour: silent}
  - {number: "1010", behaviour: silent}
  - {number: "1011", behaviour: silent}
  - {number: "1012", behaviour: silent}
  - {number: "02161234567", behaviour: silent}
  - {number: "02161234568", behaviour: silent}
  - {number: "13800000009", behaviour: silent}
  - {number: "13800000010", behaviour: answer, replies: [dtmf:1]}
"""


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The resident simulator with two backend processes behind its front (8 calls)."""
    pytest.importorskip("pjsua2")
    from callbot.residents import Simulator

    d = tmp_path_factory.mktemp("residents")
    for name in ("reply.wav", "announce.wav"):
        shutil.copy(SIP_FIXTURES / name, d / name)
    (d / "personas.yaml").write_text(PERSONAS, encoding="utf-8")
    sim = Simulator(str(d / "personas.yaml"), str(d / "rec"), port=free_port(), procs=2)
    sim.start()
    try:
        yield sim
        assert sim.restarts == 0 and sim.alive(), "a resident backend died during the tests"
    finally:
        sim.stop()
