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


@pytest.mark.parametrize("typed,number,ext", [
    ("021-6123 4567转12", "021-6123 4567", "12"),
    ("021-61234567 分机 88", "021-61234567", "88"),
    ("02161234567 ext. 5", "02161234567", "5"),
    ("13800000001x12", "13800000001", "12"),
    ("02161234567#123", "02161234567", "123"),
    ("021-61234567-123", "021-61234567", "123"),   # the whole is no number, the rest is
    ("02161234567,,123", "02161234567", ",,123"),  # a dialler's pauses
    ("02161234567p1", "02161234567", "p1"),
    ("０２１６１２３４５６７转１２", "02161234567", "12"),  # full-width
    ("021-61234567转,,123", "021-61234567", ",,123"),
    ("138-0000-0001", "138-0000-0001", ""),        # dashes of a mobile are no extension
    ("1004", "1004", ""), ("*86#", "*86#", ""), ("转123", "转123", ""),
    ("sip:100@127.0.0.1:5070转12", "sip:100@127.0.0.1:5070", "12"),
    ("sip:100@127.0.0.1:5070,,12", "sip:100@127.0.0.1:5070", ",,12"),
    ("sip:100@pbx1", "sip:100@pbx1", ""),          # an x in a host is no extension
])
def test_an_extension_typed_after_a_number(typed: str, number: str, ext: str) -> None:
    from callbot.telephony.dialplan import split_extension

    assert split_extension(typed) == (number, ext)


def test_when_an_extensions_digits_are_sent() -> None:
    from callbot.telephony.dialplan import extension_plan

    assert extension_plan("12,3") == [(2.0, "12"), (3.0, "3")]
    assert extension_plan(",,45", 0.4, 0.6) == [(1.6, "45")]
    assert extension_plan("") == extension_plan(",,") == []
