"""Acceptance, on real parts: a welfare campaign over SIP (``callbot residents serve``, ``callbot
worker``, ``callbot dispatcher``, ``callbot web`` as the processes a committee runs) where one
resident says she is not well. A local HTTP server standing in for the group robot receives the
message naming her; the 待处理 page open in Chromium shows her without a reload; staff claim and
resolve her in the browser (audited); ``callbot report --json`` lists her on the welfare
follow-up with reason needs_help and who handled it."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from callbot.accounts import AuditLog
from callbot.alerts import Alert
from callbot.campaign.store import open_db, redis_connection
from callbot.config import load_settings
from callbot.db import session_scope
from tests.alerts.robot import GroupRobot
from tests.campaign.conftest import need_real_call_parts
from tests.campaign.population import sip_conf
from tests.conftest import REPLIES, free_port
from tests.web.browser import (
    background,
    chromium,
    login,
    need_chromium,
    new_page,
    run_cli,
    served,
    shot,
    wait_log,
    web_env,
)

pytestmark = [pytest.mark.sip, pytest.mark.speech, pytest.mark.browser, pytest.mark.slow]
PW = "browser-pass-1"
PEOPLE: list[tuple[str, str, dict[str, Any]]] = [  # name, number, persona
    ("陈奶奶", "13800000001", {"behaviour": "answer", "replies": [str(REPLIES / "butaihao.wav")]}),
    ("李大爷", "13800000002", {"behaviour": "answer",
                               "replies": [str(REPLIES / "tinghaode.wav"),
                                           str(REPLIES / "buxuyao.wav")]}),
    ("周先生", "13800000003", {"behaviour": "no_answer"}),
]


@pytest.mark.timeout(600)
def test_trouble_reply_reaches_the_group_and_the_page_live(data_dir: Path, tmp_path: Path) -> None:
    need_real_call_parts()
    need_chromium()
    port = free_port(socket.SOCK_DGRAM)
    table = tmp_path / "personas.yaml"
    table.write_text(yaml.safe_dump({"residents": [{"number": n, "name": name, **p}
                                                   for name, n, p in PEOPLE]},
                                    allow_unicode=True), "utf-8")
    people = tmp_path / "关爱名单.csv"
    people.write_text("姓名,电话,地址\n" + "".join(f"{name},{n},{i + 3}号楼{201 + i}室\n"
                                                for i, (name, n, _) in enumerate(PEOPLE)),
                      "utf-8")
    with GroupRobot() as robot:
        env = web_env(data_dir, CALLBOT_SIP_CONF=str(sip_conf(tmp_path / "sip.conf", port, 6.0)),
                      CALLBOT_HEARTBEAT_S="10", CALLBOT_CALL_TTS_RATE="+40%",
                      CALLBOT_TTS_ENGINE="espeak", CALLBOT_ALERT_WEBHOOK=robot.url,
                      CALLBOT_PUBLIC_URL="http://juweihui.example")
        run_cli(env, "users", "add", "小张", "--role", "staff", "--committee", "东风居委会",
                "--password", PW)
        run_cli(env, "import", str(people), "--list", "三号楼独居老人")
        redis = redis_connection(load_settings(env))  # started once, before the processes
        try:
            _run(env, tmp_path, table, port, robot)
        finally:
            try:
                redis.shutdown(nosave=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def _run(env: dict[str, str], tmp: Path, table: Path, port: int, robot: GroupRobot) -> None:
    factory = open_db(load_settings(env))
    with (background(env, tmp / "residents.log", "residents", "serve", "--table", str(table),
                     "--port", str(port), "--calls", "4", "--record-dir", str(tmp / "rec")) as sim,
          background(env, tmp / "dispatcher.log", "dispatcher", "--interval", "0.5"),
          background(env, tmp / "worker.log", "worker", "--lines", "2"),
          served(env, tmp) as base, chromium() as browser):
        wait_log(tmp / "residents.log", "模拟居民已就绪", sim)
        page = new_page(browser, [])
        login(page, base, "小张", PW)
        page.goto(f"{base}/alerts/")
        assert "没有待处理的事项" in page.inner_text("#alerts-table")
        run_cli(env, "campaign", "create", "一月关爱回访", "--list", "三号楼独居老人",
                "--script", "welfare_check", "--lines", "2", "--windows", "00:00-24:00",
                "--max-attempts", "1", "--start")
        try:  # the row appears without reloading the page, while the calls run
            page.locator("#alerts-table tr:has-text('陈奶奶')").wait_for(timeout=180_000)
        except Exception as exc:
            logs = "\n".join(f"--- {n}.log\n" + (tmp / f"{n}.log").read_text(
                "utf-8", "replace")[-3000:] for n in ("worker", "dispatcher", "residents"))
            raise AssertionError(f"no alert on the page\n{logs}") from exc
        row = page.inner_text("#alerts-table tr:has-text('陈奶奶')")
        assert "需要帮助" in row and "3号楼201室" in row
        assert int(page.inner_text("#alert-badge")) >= 1
        shot(page, "30-alerts-live")

        sent = next(c for c in robot.wait_for(1, timeout=30) if "陈奶奶" in c)
        assert "3号楼201室" in sent and "138****0001" in sent and "一月关爱回访" in sent
        assert "需要帮助" in sent and "原话" in sent
        assert re.search(r"http://juweihui\.example/campaigns/\d+/contacts/\d+", sent)
        aid = int(re.search(r"编号：#(\d+)", sent).group(1))  # type: ignore[union-attr]

        # claim and resolve in the browser
        page.click("#alerts-table tr:has-text('陈奶奶') a:has-text('处理')")
        page.wait_for_url(f"{base}/alerts/{aid}")
        page.click(f"#claim-{aid}")
        page.wait_for_url(f"{base}/alerts/{aid}")
        assert "小张" in page.inner_text(".fu-claimed")
        page.fill(f"#note-{aid}", "网格员已上门，陈奶奶腰疼，已联系家属")
        page.click(f"#resolved-{aid}")
        page.wait_for_url(f"{base}/alerts/{aid}")
        assert "已解决" in page.inner_text(".fu-state")
        assert "alert_resolved" in page.inner_text("#history")
        shot(page, "31-alert-resolved")

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status = json.loads(run_cli(env, "campaign", "status", "一月关爱回访", "--json"))
            if status["state"] == "finished":
                break
            time.sleep(1)
        assert status["state"] == "finished", status
        robot.wait_for(2, timeout=30)  # 周先生 never answered: unreachable after all attempts
        time.sleep(2)  # nothing further may arrive

    contents = robot.contents()
    assert len(contents) == 2, contents  # each alert once, the fine resident none
    assert any("周先生" in c and "联系不上" in c for c in contents)
    with session_scope(factory) as s:
        log = [(e.user_name, e.action) for e in s.scalars(
            select(AuditLog).where(AuditLog.target == f"alert:{aid}").order_by(AuditLog.id))]
        a = s.get(Alert, aid)
        assert a is not None and a.delivery == "delivered" and a.tries == 1
    assert log == [("小张", "alert_claim"), ("小张", "alert_resolved")]
    rep = json.loads(run_cli(env, "report", "一月关爱回访", "--json"))
    follow = {d["name"]: d for d in rep["welfare"]["follow_up"]}
    assert follow["陈奶奶"]["reason"] in ("needs_help", "emergency")
    assert (follow["陈奶奶"]["followup"], follow["陈奶奶"]["handled_by"]) == ("resolved", "小张")
    assert follow["周先生"]["reason"] == "unreachable" and follow["周先生"]["followup"] == "open"
    assert "李大爷" not in follow
