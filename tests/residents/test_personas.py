"""Persona tables (YAML and CSV): what loads, and clear errors for what does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from callbot.exceptions import ConfigError
from callbot.residents import load_personas
from tests.conftest import REPO, callbot_cmd, env_for_subprocess
from tests.telephony.conftest import SIP_FIXTURES


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    shutil.copy(SIP_FIXTURES / "reply.wav", tmp_path / "reply.wav")
    return tmp_path


def test_yaml_table(tdir: Path) -> None:
    (tdir / "p.yaml").write_text(
        "default: {behaviour: silent}\n"
        "residents:\n"
        "  - {number: '13800000001', name: 张阿姨, ring_s: 2, replies: [reply.wav, 'dtmf:1#', "
        "'say:好的', silence], after_replies: hangup}\n"
        "  - {number: '13800000002', behaviour: reject, code: 480}\n", encoding="utf-8")
    t = load_personas(tdir / "p.yaml")
    p = t.lookup("13800000001")
    assert p.name == "张阿姨" and p.ring_s == 2 and p.after_replies == "hangup"
    assert p.replies == (str(tdir / "reply.wav"), "dtmf:1#", "say:好的", "silence")
    assert t.lookup("13800000002").code == 480
    assert t.lookup("999").behaviour == "silent"  # the default persona


def test_csv_table(tdir: Path) -> None:
    (tdir / "p.csv").write_text(
        "number,name,behaviour,ring_s,replies,code,announcement,hangup_after_s,after_replies\n"
        "13800000001,张阿姨,answer,1.5,reply.wav|dtmf:2,,,,\n"
        "13800000009,空号,early_media_fail,,,404,say:空号,,\n"
        "13800000006,,hangup_mid_prompt,,,,,0.7,\n", encoding="utf-8")
    t = load_personas(tdir / "p.csv")
    assert len(t) == 3
    assert t.lookup("13800000001").replies == (str(tdir / "reply.wav"), "dtmf:2")
    assert t.lookup("13800000009").announcement == "say:空号"
    assert t.lookup("13800000006").hangup_after_s == 0.7
    assert t.lookup("13800000007").behaviour == "silent"  # no default: unlisted stay silent


@pytest.mark.parametrize(("name", "text", "words"), [
    ("p.yaml", "residents:\n  - {number: '1', behaviour: dance}\n", "residents[1] behaviour"),
    ("p.yaml", "residents:\n  - {number: '1', replies: [missing.wav]}\n", "missing.wav"),
    ("p.yaml", "residents:\n  - {number: '1', replies: ['dtmf:1x']}\n", "not DTMF digits"),
    ("p.yaml", "residents:\n  - {number: '1', ring_s: soon}\n", "residents[1] ring_s"),
    ("p.yaml", "residents:\n  - {number: '1', code: 200}\n", "4xx-6xx"),
    ("p.yaml", "residents:\n  - {number: '1', behaviour: early_media_fail}\n", "announcement"),
    ("p.yaml", "residents:\n  - {number: '1', colour: red}\n", "unknown field(s) colour"),
    ("p.yaml", "residents:\n  - {number: '1'}\n  - {number: '1'}\n", "appears twice"),
    ("p.yaml", "people: []\n", "residents:"),
    ("p.csv", "phone,behaviour\n1,busy\n", "header row"),
    ("p.csv", "number,behaviour\n1,busy\n2,sing\n", "row 3 behaviour"),
    ("p.txt", "x", ".yaml, .yml or .csv"),
])
def test_bad_tables_name_file_row_and_field(tdir: Path, name: str, text: str, words: str) -> None:
    (tdir / name).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_personas(tdir / name)
    assert str(tdir / name) in str(ei.value) and words in str(ei.value)


def test_the_sample_table_is_valid_and_check_lists_it() -> None:
    sample = REPO / "callbot" / "data" / "residents.yaml"
    assert len(load_personas(sample)) >= 9
    r = subprocess.run(callbot_cmd("residents", "check", str(sample)), capture_output=True,
                       text=True, env=env_for_subprocess(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "13800000009\t空号\tearly_media_fail" in r.stdout


def test_replies_may_talk_over_the_prompt(tdir: Path) -> None:
    (tdir / "p.yaml").write_text(
        "residents:\n"
        "  - {number: '1', replies: [{reply: reply.wav, barge_in_after_s: 0.8}, reply.wav]}\n"
        "  - {number: '2', barge_in_after_s: 1.5, replies: [reply.wav, "
        "{reply: 'dtmf:1', barge_in_after_s: 0}]}\n"
        "  - {number: '3', replies: [reply.wav]}\n", encoding="utf-8")
    t = load_personas(tdir / "p.yaml")
    p1, p2, p3 = (t.lookup(n) for n in "123")
    assert p1.replies == (str(tdir / "reply.wav"),) * 2  # the mapping's reply, resolved as usual
    assert [p1.barge_in_after(i) for i in range(3)] == [0.8, None, None]
    assert [p2.barge_in_after(i) for i in range(2)] == [1.5, 0.0]  # persona default, own value
    assert p3.reply_barge_in_s == () and p3.barge_in_after(0) is None  # old tables unchanged
    (tdir / "p.csv").write_text("number,replies,barge_in_after_s\n5,reply.wav|dtmf:1,0.7\n",
                                encoding="utf-8")
    assert load_personas(tdir / "p.csv").lookup("5").reply_barge_in_s == (0.7, 0.7)
    r = subprocess.run(callbot_cmd("residents", "check", str(tdir / "p.yaml")),
                       capture_output=True, text=True, env=env_for_subprocess(), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = {ln.split("\t")[0]: ln for ln in r.stdout.splitlines()}
    assert "barge_in=['1@0.8s']" in lines["1"] and "barge_in=['1@1.5s', '2@0s']" in lines["2"]
    assert "barge_in" not in lines["3"]


@pytest.mark.parametrize(("text", "words"), [
    ("{number: '7', replies: [{reply: reply.wav, barge_in_after_s: soon}]}",
     "residents[1] (number 7) replies[1] barge_in_after_s: expected seconds"),
    ("{number: '7', barge_in_after_s: -1, replies: [reply.wav]}",
     "residents[1] (number 7) barge_in_after_s: must be 0-600"),
    ("{number: '7', barge_in_after_s: yes, replies: [reply.wav]}", "expected seconds"),
    ("{number: '7', replies: [{barge_in_after_s: 1}]}", "replies[1]: no 'reply'"),
    ("{number: '7', replies: [{reply: reply.wav, barge: 1}]}", "unknown key(s) barge"),
    ("{number: '7', barge_in_after_s: 1}", "no replies to talk over"),
    ("{number: '7', behaviour: silent, barge_in_after_s: 1, replies: [reply.wav]}",
     "only an 'answer' persona"),
])
def test_bad_barge_in_names_the_persona(tdir: Path, text: str, words: str) -> None:
    (tdir / "p.yaml").write_text(f"residents:\n  - {text}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as ei:
        load_personas(tdir / "p.yaml")
    assert str(tdir / "p.yaml") in str(ei.value) and words in str(ei.value)
