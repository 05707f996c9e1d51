"""`callbot residents serve` and `callbot call` in subprocesses, as a README user runs them."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from callbot.residents import read_call_log
from tests.conftest import callbot_cmd, env_for_subprocess, free_port
from tests.telephony.conftest import PERSONAS, SIP_FIXTURES

pytestmark = pytest.mark.sip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    pytest.importorskip("pjsua2")
    d = tmp_path_factory.mktemp("served")
    for name in ("reply.wav", "announce.wav"):
        (d / name).write_bytes((SIP_FIXTURES / name).read_bytes())
    (d / "personas.yaml").write_text(PERSONAS, encoding="utf-8")
    port = free_port()
    p = subprocess.Popen(callbot_cmd("residents", "serve", "--table", str(d / "personas.yaml"),
                                     "--port", str(port), "--record-dir", str(d / "rec")),
                         env=env_for_subprocess(CALLBOT_DATA_DIR=str(d / "var")),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    assert "resident simulator ready" in line, line + (p.stderr.read() if p.poll() else "")
    try:
        yield port, d
    finally:
        p.terminate()
        p.wait(10)


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(callbot_cmd(*args), capture_output=True, text=True, timeout=60,
                          env=env_for_subprocess(), cwd=cwd)


def test_call_with_prompt_prints_json(served) -> None:
    port, _ = served
    r = _run("call", f"sip:1001@127.0.0.1:{port}", "--play", str(SIP_FIXTURES / "prompt.wav"),
             "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == ["number", "outcome", "sip_code", "reason", "hangup_by", "ring_s",
                         "talk_s", "dtmf", "announcement"]
    assert out["number"] == f"sip:1001@127.0.0.1:{port}"
    assert out["outcome"] == "answered" and out["sip_code"] == 200
    assert out["dtmf"] == "1"  # the resident pressed 1 after the one prompt it heard


def test_number_through_the_dial_pattern_and_a_readable_log(served, tmp_path: Path) -> None:
    port, _ = served
    conf = tmp_path / "sip.conf"
    conf.write_text("[account]\nbind = 127.0.0.1\nlocal_port = 0\n"
                    f"[dial]\nuri = sip:{{number}}@127.0.0.1:{port}\nstrip = +86\n"
                    "[media]\nrtp_port = 0\n", encoding="utf-8")
    r = _run("call", "+861006", "--sip-conf", str(conf))
    assert r.returncode == 0, r.stderr
    assert "拨号 +861006 → sip:1006@127.0.0.1" in r.stdout
    assert "占线 [busy] SIP 486" in r.stdout
    # ./sip.conf is found without --sip-conf, and --ring-timeout is ours
    t = time.monotonic()
    r = _run("call", "1004", "--ring-timeout", "2", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "no_answer"
    assert time.monotonic() - t < 10


def test_a_number_with_an_extension_sends_its_digits_after_the_answer(served, tmp_path) -> None:
    """转分机 on a test call: the spellings a contact list may hold (转12, -3, ext 7; a SIP URI
    with ,,45 — two pauses) through the dial pattern; the resident (the simulator) receives
    exactly the extension's digits, and the prompt plays only after them."""
    port, _ = served
    conf = tmp_path / "sip.conf"
    conf.write_text("[account]\nbind = 127.0.0.1\nlocal_port = 0\n"
                    f"[dial]\nuri = sip:{{number}}@127.0.0.1:{port}\n[media]\nrtp_port = 0\n"
                    "[calls]\nextension_delay = 0.4\nextension_pause = 0.6\n", encoding="utf-8")
    (tmp_path / "keys.yaml").write_text(
        "name: keys\nfields:\n  need_masks: bool\nsteps:\n  ask:\n    ask: \"要口罩吗？按1要。\"\n"
        "    keys: {1: yes}\n    answers:\n      yes: {set: {need_masks: true}, end: completed}\n",
        encoding="utf-8")
    calls = {"02161234567": ("021-6123 4567转12", "12"), "02161234568": ("021-61234568-3", "3"),
             "13800000009": ("138 0000 0009 ext 7", "7"),
             "1010": (f"sip:1010@127.0.0.1:{port},,45", "45"),
             "13800000010": ("13800000010分机 6", "6")}  # with --template: the dialogue after
    extra = {"02161234567": ["--play", str(SIP_FIXTURES / "prompt.wav")],
             "13800000010": ["--template", str(tmp_path / "keys.yaml"), "--json"]}
    procs = {n: subprocess.Popen(
        callbot_cmd("call", spelled, "--sip-conf", str(conf),
                    *(extra.get(n) or ["--listen", "1"])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for_subprocess())
        for n, (spelled, _digits) in calls.items()}
    outs = {n: p.communicate(timeout=120) for n, p in procs.items()}
    for n, p in procs.items():
        assert p.returncode == 0, outs[n][1]
        if n == "13800000010":  # the resident pressed 1 to the question asked after the digits
            out = json.loads(outs[n][0])
            assert out["answers"] == {"need_masks": True} and out["ended"] == "completed", out
            continue
        assert "接通" in outs[n][0] and f"发送分机号 {calls[n][1][0]}" in outs[n][0], outs[n][0]
    log = {r["number"]: r for r in read_call_log(served[1] / "rec", wait_for=list(calls))}
    got = {n: log[n]["result"]["dtmf"] for n in calls}
    assert got == {n: digits for n, (_s, digits) in calls.items()}
    # the prompt only after the digits (0.4 s after the answer, then ~0.55 s of settling)
    assert log["02161234567"]["prompt_spans"][0][0] > 0.8, log["02161234567"]
    # the two pauses (2 × 0.6 s) before 45: the call lasted past them
    assert log["1010"]["result"]["talk_s"] > 1.6


def test_bad_sip_conf_is_a_clear_error(tmp_path: Path) -> None:
    conf = tmp_path / "sip.conf"
    conf.write_text("[account]\ntransport = carrier-pigeon\n")
    r = _run("call", "13800000001", "--sip-conf", str(conf))
    assert r.returncode != 0
    assert str(conf) in r.stderr and "[account] transport" in r.stderr
    assert "udp, tcp or tls" in r.stderr


def test_demo_calls_a_simulated_resident(tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    r = subprocess.run(callbot_cmd("demo", "--number", "13800000002", "--json"),
                       capture_output=True, text=True, timeout=90,
                       env=env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var")))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "answered" and out["dtmf"] == "1"
    assert out["resident"]["prompts_heard"] == 1
    assert Path(out["resident"]["recording"]).is_file()
