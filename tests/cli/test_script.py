"""``callbot simulate`` and ``callbot template`` run as a user runs them: in a subprocess, piped
and on a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import callbot_cmd, env_for_subprocess


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(callbot_cmd(*args), input=stdin, capture_output=True, text=True,
                          env=env_for_subprocess(), timeout=60)


def simulate_json(template: str, replies: list[str], *vars: str) -> dict:
    args = ["simulate", template, "--json"]
    for v in vars:
        args += ["--var", v]
    proc = cli(*args, stdin="".join(r + "\n" for r in replies))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_simulate_json_mask_two() -> None:
    out = simulate_json("mask_reservation", ["需要", "两个", "对"], "姓名=张阿姨")
    assert out["answers"] == {"need_masks": True, "masks": 2}
    assert out["ended"] == "completed"
    assert out["transcript"][0]["role"] == "bot" and out["transcript"][0]["text"].startswith("张阿姨您好")
    assert [t["text"] for t in out["transcript"] if t["role"] == "callee"] == ["需要", "两个", "对"]
    assert all(isinstance(t["t"], float | int) for t in out["transcript"])


def test_simulate_json_keys_silence_and_hang_up() -> None:
    assert simulate_json("mask_reservation", ["#1", "#3", "#1"], "name=李伯")["answers"] == {
        "need_masks": True, "masks": 3}
    out = simulate_json("mask_reservation", ["", ""], "姓名=王")
    assert out["answers"] == {} and out["ended"] == "no_input"
    assert "再见" in out["transcript"][-1]["text"]
    out = simulate_json("mask_reservation", ["需要"], "姓名=王")  # input ends: the callee hung up
    assert out["ended"] == "hung_up" and out["answers"] == {"need_masks": True}


def test_simulate_json_welfare_flags_needs_help() -> None:
    out = simulate_json("welfare_check", ["我不舒服"], "姓名=赵奶奶")
    assert out["answers"] == {"welfare": "needs_help", "note": "我不舒服"}
    assert out["ended"] == "completed"


def test_simulate_a_template_file(tmp_path: Path) -> None:
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nsteps:\n  a:\n    ask: 好吗？按1\n    keys: {1: yes}\n"
                 "    answers: {yes: {end: completed}, no: {end: declined}}\n", encoding="utf-8")
    out = simulate_json(str(p), ["不好意思，不要"])
    assert out["ended"] == "declined"


def test_simulate_clear_errors() -> None:
    proc = cli("simulate", "mask_reservation", "--json", stdin="")
    assert proc.returncode != 0 and "--var 姓名=" in proc.stderr
    proc = cli("simulate", "mask_reservation", "--var", "张阿姨", stdin="")
    assert proc.returncode != 0 and "k=v" in proc.stderr
    proc = cli("simulate", "no_such_template", stdin="")
    assert proc.returncode != 0 and "找不到模板" in proc.stderr


def test_simulate_piped_text_mode_shows_prompts_and_records() -> None:
    proc = cli("simulate", "mask_reservation", "--var", "姓名=张阿姨", stdin="需要\n#2\n#1\n")
    assert proc.returncode == 0, proc.stderr
    assert "机器人: 张阿姨您好" in proc.stdout
    assert "[记录 record] masks = 2" in proc.stdout
    assert "结束 ended: completed" in proc.stdout


def test_simulate_interactive_on_a_terminal() -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a user's terminal running the command
        env = env_for_subprocess()
        cmd = callbot_cmd("simulate", "welfare_check", "--var", "姓名=钱阿姨")
        os.execvpe(cmd[0], cmd, env)
    buf = b""

    def read_until(marker: str, timeout: float = 30.0) -> str:
        nonlocal buf
        deadline = time.monotonic() + timeout
        while marker.encode() not in buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} in {buf.decode(errors='replace')!r}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
        text = buf.decode(errors="replace")
        buf = b""
        return text

    try:
        screen = read_until("您>")
        assert "钱阿姨您好" in screen and "身体怎么样" in screen
        os.write(fd, "挺好的\n".encode())
        screen = read_until("您>")
        assert "welfare = 'ok'" in screen and "需要我们帮忙" in screen
        os.write(fd, b"#1\n")
        screen = read_until("answers:")
        assert "网格员" in screen and "welfare = 'needs_help'" in screen
        assert "结束 ended: completed" in screen
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


def test_template_list_show_validate(tmp_path: Path) -> None:
    proc = cli("template", "list", "--json")
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["mask_reservation"]["fields"] == {"need_masks": "bool", "masks": "int 0–5"}
    assert rows["welfare_check"]["title"] == "独居老人关爱回访"
    proc = cli("template", "show", "welfare_check")
    assert proc.returncode == 0 and "name: welfare_check" in proc.stdout
    shown = json.loads(cli("template", "show", "mask_reservation", "--json").stdout)
    assert shown["steps"]["ask_need"]["keys"] == {"1": "yes", "2": "no"}
    proc = cli("template", "validate", "mask_reservation", "--columns", "姓名,电话")
    assert proc.returncode == 0 and "模板有效" in proc.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrequires: [姓名]\nsteps:\n  a:\n    say: \"{{ ''.__class__ }}{{ 楼号 }}\"\n"
                   "    next: b\n", encoding="utf-8")
    proc = cli("template", "validate", str(bad))
    assert proc.returncode == 1
    assert f"{bad}:5:" in proc.stderr and "沙箱" in proc.stderr
    assert f"{bad}:6:" in proc.stderr and "'b'" in proc.stderr
    out = json.loads(cli("template", "validate", str(bad), "--json").stdout)
    assert out["ok"] is False and {5, 6} <= {e["line"] for e in out["errors"]}

    contacts = tmp_path / "list.csv"
    contacts.write_text("电话,地址\n13800000000,3号楼\n", encoding="utf-8")
    proc = cli("template", "validate", "welfare_check", "--contacts", str(contacts))
    assert proc.returncode == 1 and "名单缺少" in proc.stderr


@pytest.mark.parametrize("name", ["mask_reservation", "welfare_check"])
def test_builtin_templates_ship_in_the_package(name: str) -> None:
    from importlib import resources

    assert (resources.files("callbot") / "templates" / f"{name}.yaml").is_file()
