"""sip.conf: the sample loads; bad files fail naming the file, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbot.config import SipConfig, load_sip_conf
from callbot.exceptions import ConfigError, DialError
from callbot.telephony.dialplan import to_sip_uri
from tests.conftest import REPO


def test_sample_sip_conf_loads() -> None:
    c = load_sip_conf(REPO / "sip.conf")
    assert c.mode == "direct" and c.transport == "udp"
    assert c.codecs == ("PCMU", "PCMA")
    assert c.calls_per_process == 4
    assert to_sip_uri("13800000001", c) == "sip:13800000001@127.0.0.1:5070"


def test_register_shape_with_password_from_env(tmp_path: Path) -> None:
    f = tmp_path / "sip.conf"
    f.write_text("[account]\nmode = register\nregistrar = sip:pbx.example.com:5060\n"
                 "username = 8001\npassword_env = MY_SIP_PW\ncaller_id = 居委会\n"
                 "[dial]\nprefix = 9\nuri = sip:{number}@{domain}\n"
                 "[calls]\nring_timeout = 25\nmax_call_length = 120\n", encoding="utf-8")
    c = load_sip_conf(f, env={"MY_SIP_PW": "s3cret"})
    assert c.password == "s3cret" and c.domain == "pbx.example.com"
    assert c.ring_timeout_s == 25 and c.max_call_s == 120
    assert to_sip_uri("+86 138-0000-0001", c) == "sip:913800000001@pbx.example.com"
    assert "s3cret" not in repr(c)


@pytest.mark.parametrize(("text", "key", "words"), [
    ("[account]\nmode = pbx\n", "[account] mode", "register"),
    ("[account]\ntransport = sctp\n", "[account] transport", "udp, tcp or tls"),
    ("[account]\nlocal_port = 99999\n", "[account] local_port", "between 0 and 65535"),
    ("[account]\nmode = register\nusername = a\npassword = b\n", "[account] registrar",
     "registrar"),
    ("[account]\nmode = register\nregistrar = pbx.example.com\n", "[account] registrar",
     "SIP URI"),
    ("[account]\npassword_env = NOPE_NOT_SET\n", "[account] password_env", "NOPE_NOT_SET"),
    ("[account]\ncolour = red\n", "[account] colour", "unknown key"),
    ("[trunk]\nmode = direct\n", None, "unknown section [trunk]"),
    ("[dial]\nuri = sip:pbx.example.com\n", "[dial] uri", "{number}"),
    ("[media]\ncodecs = PCMU, opus\n", "[media] codecs", "opus"),
    ("[calls]\nring_timeout = soon\n", "[calls] ring_timeout", "number of seconds"),
    ("[calls]\ncalls_per_process = 8\n", "[calls] calls_per_process", "between 1 and 4"),
    ("no section here\n", None, "not a valid INI file"),
])
def test_bad_sip_conf_names_file_key_and_problem(tmp_path: Path, text: str, key: str | None,
                                                 words: str) -> None:
    f = tmp_path / "sip.conf"
    f.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_sip_conf(f, env={})
    msg = str(ei.value)
    assert str(f) in msg and words in msg
    if key:
        assert key in msg


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_sip_conf("/nonexistent/sip.conf")


def test_dial_pattern() -> None:
    c = SipConfig(dial_uri="sip:{number}@{domain}", domain="pbx", dial_prefix="0")
    assert to_sip_uri("13800000001", c) == "sip:013800000001@pbx"
    assert to_sip_uri("sip:100@127.0.0.1:5070", c) == "sip:100@127.0.0.1:5070"
    tcp = SipConfig(transport="tcp", dial_uri="sip:{number}@pbx")
    assert to_sip_uri("10086", tcp) == "sip:10086@pbx;transport=tcp"
    assert to_sip_uri("sip:1@h;transport=udp", tcp) == "sip:1@h;transport=udp"
    with pytest.raises(DialError):
        to_sip_uri("call me", c)
    with pytest.raises(DialError):
        to_sip_uri("sip:bad uri@", c)
