"""Creating a campaign validates its template against the list: a broken template, or one that
uses a column the list lacks, is refused with file and line (service and CLI; the web form in tests/web/test_campaign_template.py); nothing is stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from callbot.campaign import service
from callbot.campaign.lists import save_list
from callbot.contacts import parse_contacts
from callbot.db import session_scope
from callbot.exceptions import CampaignError
from tests.campaign.conftest import GOOD, WITHOUT_COLUMN, campaign_count, make_env
from tests.conftest import callbot_cmd, env_for_subprocess

BROKEN = GOOD.replace("next: bye}\n  bye:", "next: nowhere}\n  bye:")
"""The ``no`` answer goes to a step that does not exist (line 13)."""

WITH_COLUMN = "姓名,电话,停水时间\n甲,13800000001,明天上午\n乙,13800000002,明天下午\n"


def _template(tmp_path: Path, text: str, name: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_service_refuses_broken_template_and_missing_column(tmp_path) -> None:  # type: ignore[no-untyped-def]
    factory = make_env(tmp_path / "var", None, None).factory()
    good = _template(tmp_path, GOOD, "good")
    broken = _template(tmp_path, BROKEN, "broken")
    with session_scope(factory) as s:
        save_list(s, "有停水时间", parse_contacts(WITH_COLUMN.encode(), "a.csv"))
        save_list(s, "无停水时间", parse_contacts(WITHOUT_COLUMN.encode(), "b.csv"))

    with session_scope(factory) as s, pytest.raises(CampaignError) as bad:
        service.create_campaign(s, "坏模板", "有停水时间", str(broken))
    msg = str(bad.value)
    assert "话术模板无效" in msg and f"{broken}:13:" in msg and "nowhere" in msg, msg

    with session_scope(factory) as s, pytest.raises(CampaignError) as missing:
        service.create_campaign(s, "缺列", "无停水时间", str(good))
    msg = str(missing.value)
    assert f"{good}:3:" in msg and "名单缺少模板需要的列 '停水时间'" in msg, msg
    assert f"{good}:9:" in msg and "名单没有这一列" in msg, msg

    with session_scope(factory) as s, pytest.raises(CampaignError) as absent:
        service.create_campaign(s, "没有文件", "有停水时间", str(tmp_path / "nope.yaml"))
    assert "找不到模板" in str(absent.value)
    assert campaign_count(factory) == 0

    with session_scope(factory) as s:
        c = service.create_campaign(s, "好", "有停水时间", str(good))
        assert c.state == "draft"
        # the built-ins need only 姓名, which every list carries
        service.create_campaign(s, "口罩", "无停水时间", "mask_reservation")
    assert campaign_count(factory) == 2


def test_cli_create_names_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = make_env(tmp_path / "var", None, None)
    e = env_for_subprocess(**env.env)
    good = _template(tmp_path, GOOD, "good")
    csv = tmp_path / "r.csv"
    csv.write_text(WITHOUT_COLUMN, encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(callbot_cmd(*args), capture_output=True, text=True, env=e)

    assert run("import", str(csv), "--list", "L").returncode == 0
    r = run("campaign", "create", "C", "--list", "L", "--script", str(good))
    assert r.returncode != 0
    assert f"{good}:9:" in r.stderr and "停水时间" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run("campaign", "list")
    assert "C" not in r.stdout.split(), r.stdout
    r = run("campaign", "create", "C", "--list", "L", "--script", "welfare_check")
    assert r.returncode == 0, r.stderr

