"""Scripts: built-ins listed, upload/edit with line-numbered errors, try-it through the engine."""

from __future__ import annotations

import io
from pathlib import Path

from tests.web.conftest import GOOD_YAML, csrf_token, post

BAD_YAML = """\
name: my_bad
title: 坏话术
start: greet
steps:
  greet:
    say: "您好"
    next: nowhere
"""



def test_builtins_listed_and_shown(login_as) -> None:
    c = login_as("staff_a")
    html = c.get("/scripts/").get_data(as_text=True)
    assert "口罩预约登记" in html and "独居老人关爱回访" in html
    html = c.get("/scripts/mask_reservation").get_data(as_text=True)
    assert "试一试" in html and "need_masks" in html and 'id="L1"' in html
    assert "张阿姨您好" in html  # prompts rendered with the sample contact
    assert c.get("/scripts/nope").status_code == 404


def test_try_it_runs_the_engine(login_as) -> None:
    c = login_as("staff_a")
    token = csrf_token(c, "/scripts/mask_reservation")
    url = "/scripts/mask_reservation/try"
    hdr = {"X-CSRFToken": token}
    r = c.post(url, json={"start": True}, headers=hdr).get_json()
    assert any("张阿姨您好" in line["text"] for line in r["lines"])
    state = r["state"]
    r = c.post(url, json={"state": state, "reply": "需要"}, headers=hdr).get_json()
    assert r["answers"]["need_masks"] is True and r["ended"] is None
    r = c.post(url, json={"state": r["state"], "reply": "#3"}, headers=hdr).get_json()
    assert r["answers"]["masks"] == 3
    r = c.post(url, json={"state": r["state"], "reply": "对"}, headers=hdr).get_json()
    assert r["ended"] == "已完成" and r["answers"] == {"need_masks": True, "masks": 3}
    # the supervisor may try scripts too (it changes nothing)
    sup = login_as("super")
    r = sup.post(url, json={"start": True}, headers={"X-CSRFToken": csrf_token(sup, "/scripts/")})
    assert r.status_code == 200


def test_try_it_understands_free_replies_like_a_call(login_as) -> None:
    """The 试一试 box types text; the same classifier as calls reads it (issue 9)."""
    c = login_as("staff_a")
    url = "/scripts/welfare_check/try"
    hdr = {"X-CSRFToken": csrf_token(c, "/scripts/welfare_check")}
    state = c.post(url, json={"start": True}, headers=hdr).get_json()["state"]
    r = c.post(url, json={"state": state, "reply": "我摔了一跤站不起来"}, headers=hdr).get_json()
    assert r["answers"]["urgent"] is True and r["answers"]["welfare"] == "needs_help"
    assert r["ended"] == "已完成"
    state = c.post(url, json={"start": True}, headers=hdr).get_json()["state"]
    r = c.post(url, json={"state": state, "reply": "还凑合"}, headers=hdr).get_json()
    r = c.post(url, json={"state": r["state"], "reply": "暂时不用，谢谢"}, headers=hdr).get_json()
    assert r["answers"] == {"welfare": "ok"}


def test_bad_yaml_shows_line_and_saves_nothing(app, login_as) -> None:
    c = login_as("staff_a")
    r = post(c, "/scripts/new", {"text": BAD_YAML}, page="/scripts/new")
    html = r.get_data(as_text=True)
    assert r.status_code == 400
    assert "第 7 行" in html and "nowhere" in html and "errline" in html
    assert not list(Path(app.config["SCRIPTS_DIR"]).glob("*.yaml"))
    r = post(c, "/scripts/new", {"text": "name: [unclosed\n  - x"}, page="/scripts/new")
    assert r.status_code == 400 and "第 " in r.get_data(as_text=True)
    # upload of a non-YAML file and of a bad YAML file
    token = csrf_token(c, "/scripts/")
    r = c.post("/scripts/upload", data={"csrf_token": token, "file": (io.BytesIO(b"x"), "a.txt")},
               content_type="multipart/form-data")
    assert r.status_code == 400 and "不支持的文件类型" in r.get_data(as_text=True)
    r = c.post("/scripts/upload", data={"csrf_token": token,
                                        "file": (io.BytesIO(BAD_YAML.encode()), "bad.yaml")},
               content_type="multipart/form-data")
    assert r.status_code == 400 and "第 7 行" in r.get_data(as_text=True)
    # a built-in's name is refused
    r = post(c, "/scripts/new", {"text": GOOD_YAML.replace("water_check", "mask_reservation")},
             page="/scripts/new")
    assert r.status_code == 400 and "内置话术" in r.get_data(as_text=True)
    assert not list(Path(app.config["SCRIPTS_DIR"]).glob("*.yaml"))


def test_upload_edit_and_use_in_campaign(app, login_as) -> None:
    c = login_as("staff_a")
    token = csrf_token(c, "/scripts/")
    r = c.post("/scripts/upload", data={"csrf_token": token,
                                        "file": (io.BytesIO(GOOD_YAML.encode()), "water.yaml")},
               content_type="multipart/form-data")
    assert r.status_code == 302 and r.headers["Location"].endswith("/scripts/water_check")
    assert "停水通知" in c.get("/scripts/").get_data(as_text=True)
    r = post(c, "/scripts/water_check/edit", {"text": GOOD_YAML.replace("停水通知", "停水通知（改）")},
             page="/scripts/water_check/edit")
    assert r.status_code == 302
    assert "停水通知（改）" in c.get("/scripts/water_check").get_data(as_text=True)
    r = post(c, "/scripts/water_check/edit", {"text": BAD_YAML.replace("my_bad", "water_check")},
             page="/scripts/water_check/edit")
    assert r.status_code == 400
    assert "停水通知（改）" in (Path(app.config["SCRIPTS_DIR"]) / "water_check.yaml").read_text("utf-8")
    assert "停水通知" in c.get("/campaigns/new").get_data(as_text=True)
    # another committee's staff does not see it; supervisors cannot edit
    assert login_as("staff_b").get("/scripts/water_check").status_code == 404
    sup = login_as("super")
    assert sup.get("/scripts/water_check").status_code == 200
    assert post(sup, "/scripts/water_check/edit", {"text": GOOD_YAML}).status_code == 403


def test_prompt_audio(login_as) -> None:
    """With the speech module a prompt comes back as a WAV; without it, a clear 503."""
    import importlib.util

    c = login_as("staff_a")
    assert c.get("/scripts/mask_reservation/prompts/999.wav").status_code == 404
    r = c.get("/scripts/mask_reservation/prompts/0.wav")
    if importlib.util.find_spec("callbot.speech.tts") is None:
        assert r.status_code == 503 and "语音合成不可用" in r.get_data(as_text=True)
    else:
        assert r.status_code == 200, r.get_data(as_text=True)[:500]
        assert r.data[:4] == b"RIFF" and r.mimetype == "audio/wav"


def test_alias_bomb_and_render_bomb_uploads_are_refused_and_save_nothing(app, login_as) -> None:
    """Issue 13 holes 1–2 through the web: a 1 KB YAML alias bomb and a template that
    validates fast but would render ``'x' * 10**7`` are refused on the editor page with their
    line, and nothing is saved."""
    import resource

    c = login_as("staff_a")
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = GOOD_YAML.replace("title: 停水通知\n", "title: 停水通知\n" + "\n".join(levels) + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = post(c, "/scripts/new", {"text": bomb}, page="/scripts/new")
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "别名" in html and "第 3 行" in html
    assert grew_mb < 100, grew_mb
    slow = GOOD_YAML.replace('say: "谢谢，再见。"', "say: \"谢谢{{ 'x' * 10**7 }}\"")
    r = post(c, "/scripts/new", {"text": slow}, page="/scripts/new")
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "太长" in html and "第 15 行" in html
    assert not list(Path(app.config["SCRIPTS_DIR"]).glob("*.yaml"))


def test_try_it_shows_the_alerts_and_the_transfer_and_sends_nothing(app, login_as) -> None:  # type: ignore[no-untyped-def]
    """As ``callbot simulate --json``: the alerts the dialogue would raise and the 转人工 it would
    make are shown in the box; no alert row is written and nothing is dialled."""
    from sqlalchemy import func, select

    from callbot.alerts import Alert
    from callbot.committees import CommitteeSettings

    c = login_as("staff_a")
    url = "/scripts/welfare_check/try"
    hdr = {"X-CSRFToken": csrf_token(c, "/scripts/welfare_check")}

    def call(reply: str, duty: str = "answers") -> dict:  # type: ignore[type-arg]
        state = c.post(url, json={"start": True, "duty": duty}, headers=hdr).get_json()["state"]
        return c.post(url, json={"state": state, "reply": reply}, headers=hdr).get_json()  # type: ignore[no-any-return]

    r = call("我摔了一跤站不起来")
    assert r["alerts"] == [{"reason": "needs_help", "urgent": True, "said": "我摔了一跤站不起来",
                            "detail": ""}]
    shown = [line for line in r["lines"] if "alert" in line["cls"]]
    assert len(shown) == 1 and "urgent" in shown[0]["cls"]
    assert "紧急" in shown[0]["text"] and "需要帮助" in shown[0]["text"]
    assert "不发送" in shown[0]["text"] and r["transfer"] is None  # no duty phone set up yet
    r = call("我要找人工")
    assert r["ended"] and r["transfer"] is None
    assert [(a["reason"], a["urgent"]) for a in r["alerts"]] == [("human", False)]
    assert "还没有配置值班电话" in c.get("/scripts/welfare_check").get_data(as_text=True)

    factory = app.extensions["callbot_sessionmaker"]
    with factory() as s:  # the committee's duty phone
        s.add(CommitteeSettings(name="东风居委会", full_phone=False, updated_by="admin",
                                duty_number="88880001", transfer_timeout_s=15))
        s.commit()
    assert "值班电话 88880001接听" in c.get("/scripts/welfare_check").get_data(as_text=True)
    r = call("我要找人工")
    assert r["transfer"] == {"to": "88880001", "timeout_s": 15.0, "answered": True,
                             "say": "好的，正在为您转接社区值班人员，请稍等。"}
    assert r["alerts"] == [] and any("转人工 → 88880001" in line["text"] for line in r["lines"])
    r = call("我要找人工", duty="no-answer")
    assert r["transfer"]["answered"] is False
    assert [(a["reason"], a["urgent"]) for a in r["alerts"]] == [("human", True)]
    assert "值班电话 88880001 无人接听" in r["alerts"][0]["detail"]
    assert any("值班人员暂时没有接听" in line["text"] for line in r["lines"] if line["cls"] == "bot")
    # another committee's staff: its own (none) duty phone, so no transfer
    other = login_as("staff_b")
    hdr_b = {"X-CSRFToken": csrf_token(other, "/scripts/welfare_check")}
    state = other.post(url, json={"start": True}, headers=hdr_b).get_json()["state"]
    r = other.post(url, json={"state": state, "reply": "我要找人工"}, headers=hdr_b).get_json()
    assert r["transfer"] is None
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0  # nothing raised or sent


def test_try_it_and_simulate_play_the_same_transfer(app, login_as, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """试一试 and ``callbot simulate`` share one dry run of 转人工 (callbot.transfer.DryRunTransfer):
    the same script, replies and duty-phone behaviour give the same transfer, alerts and end."""
    import json
    import subprocess

    from callbot import labels
    from callbot.committees import CommitteeSettings
    from tests.conftest import callbot_cmd, env_for_subprocess

    with app.extensions["callbot_sessionmaker"]() as s:
        s.add(CommitteeSettings(name="东风居委会", full_phone=False, updated_by="admin",
                                duty_number="88880001", transfer_timeout_s=20))
        s.commit()
    c = login_as("staff_a")
    url = "/scripts/welfare_check/try"
    hdr = {"X-CSRFToken": csrf_token(c, "/scripts/welfare_check")}
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var"),
                             CALLBOT_DUTY_NUMBER="88880001")
    for duty in ("answers", "no-answer"):
        start = {"start": True, "duty": duty, "vars": "姓名=陈奶奶"}
        state = c.post(url, json=start, headers=hdr).get_json()["state"]
        web = c.post(url, json={"state": state, "reply": "我要找人工", "vars": "姓名=陈奶奶"},
                     headers=hdr).get_json()
        proc = subprocess.run(callbot_cmd("simulate", "welfare_check", "--json", "--var",
                                          "姓名=陈奶奶", "--duty", duty),
                              input="我要找人工\n", capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        cli = json.loads(proc.stdout)
        assert web["transfer"] == cli["transfer"], duty
        assert web["transfer"]["answered"] is (duty == "answers")
        assert web["alerts"] == cli["alerts"], duty
        assert web["ended"] == labels.ended(cli["ended"]), duty
