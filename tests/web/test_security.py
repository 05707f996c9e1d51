"""The holes a live security test found (issue 13), each reproduced through the web app."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from sqlalchemy import select

from callbot.accounts import User
from tests.conftest import callbot_cmd, env_for_subprocess
from tests.web.conftest import PASSWORD, csrf_token, login
from tests.web.helpers import route_urls, upload

COOKIE = "callbot_session"


def _stolen(app: Any, client: Any) -> Any:
    """A second client carrying a copy of *client*'s session cookie (what a thief replays)."""
    value = client.get_cookie(COOKIE).value
    thief = app.test_client()
    thief.set_cookie(COOKIE, value)
    return thief


def _uid(app: Any, name: str) -> int:
    with app.extensions["callbot_sessionmaker"]() as s:
        return int(s.scalar(select(User.id).where(User.name == name)))


# --- hole 4: sessions are revoked on the server ------------------------------------------------

def test_stolen_cookie_dies_at_logout(app, login_as) -> None:
    c = login_as("staff_a")
    thief = _stolen(app, c)
    assert thief.get("/").status_code == 200  # the copy works while the owner is logged in
    assert c.post("/logout", data={"csrf_token": csrf_token(c, "/")}).status_code == 302
    r = thief.get("/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    assert thief.get("/campaigns/").status_code == 302


def test_password_change_ends_other_sessions(app, login_as) -> None:
    c = login_as("staff_a")
    other = login_as("staff_a")  # the same person on another computer
    thief = _stolen(app, other)  # a copy of that one's cookie
    token = csrf_token(c, "/account/password")
    r = c.post("/account/password", data={"csrf_token": token, "current": "wrong-one-123",
                                          "new": "新的密码-long-1", "confirm": "新的密码-long-1"})
    assert r.status_code == 400 and "当前密码不正确" in r.get_data(as_text=True)
    r = c.post("/account/password", data={"csrf_token": token, "current": PASSWORD,
                                          "new": "新的密码-long-1", "confirm": "新的密码-long-1"})
    assert r.status_code == 302
    assert c.get("/").status_code == 200  # the session that changed it stays
    assert other.get("/").status_code == 302 and thief.get("/").status_code == 302
    assert login(app.test_client(), "staff_a", PASSWORD).status_code == 401
    assert login(app.test_client(), "staff_a", "新的密码-long-1").status_code == 302


def test_password_reset_from_cli_and_disable_end_sessions(app, login_as, data_dir) -> None:
    a = login_as("staff_a")
    b = login_as("staff_b")
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir))
    r = subprocess.run(callbot_cmd("users", "passwd", "staff_a", "--password", "reset-by-cli-77"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert a.get("/").status_code == 302
    admin = login_as("admin")
    r = admin.post(f"/admin/users/{_uid(app, 'staff_b')}/active",
                   data={"csrf_token": csrf_token(admin, "/")})
    assert r.status_code == 302
    assert b.get("/").status_code == 302
    # re-enabling does not bring the old session back
    admin.post(f"/admin/users/{_uid(app, 'staff_b')}/active",
               data={"csrf_token": csrf_token(admin, "/")})
    assert b.get("/").status_code == 302
    assert admin.get("/").status_code == 200


def test_session_expires_on_the_server(app, login_as) -> None:
    """The 8 h lifetime is the server's: an old session row is refused even if the cookie lives."""
    from datetime import timedelta

    from callbot.accounts import WebSession

    c = login_as("super")
    with app.extensions["callbot_sessionmaker"]() as s:
        row = s.scalars(select(WebSession)).one()
        row.created_at = row.created_at - timedelta(hours=9)
        s.commit()
    assert c.get("/").status_code == 302


def test_last_admin_cannot_be_disabled_and_cli_re_enables(app, login_as, data_dir) -> None:
    from callbot.accounts import create_user

    with app.extensions["callbot_sessionmaker"]() as s:
        create_user(s, "admin2", PASSWORD, "admin")
        s.commit()
    admin = login_as("admin")
    token = csrf_token(admin, "/")
    assert admin.post(f"/admin/users/{_uid(app, 'admin2')}/active",
                      data={"csrf_token": token}).status_code == 302
    r = admin.post(f"/admin/users/{_uid(app, 'admin')}/active", data={"csrf_token": token},
                   follow_redirects=True)
    assert "不能停用最后一个启用的管理员账号" in r.get_data(as_text=True)
    assert admin.get("/admin/users").status_code == 200  # still an admin, still logged in
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir))
    r = subprocess.run(callbot_cmd("users", "disable", "admin"), capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode != 0 and "最后一个启用的管理员" in r.stderr
    assert login(app.test_client(), "admin2").status_code == 401
    r = subprocess.run(callbot_cmd("users", "enable", "admin2"), capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert login(app.test_client(), "admin2").status_code == 302


# --- hole 5: back-off per account and address; failures audited ---------------------------------

def _client(app: Any, address: str) -> Any:
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = address
    return c


def test_wrong_guesses_do_not_lock_the_owner_out(app) -> None:
    attacker = _client(app, "203.0.113.66")
    for _ in range(8):
        assert login(attacker, "staff_a", "guess-guess-1").status_code in (401, 429)
    r = login(attacker, "staff_a", PASSWORD)  # the attacker's address waits ...
    assert r.status_code == 429 and "秒后再试" in r.get_data(as_text=True)
    assert login(_client(app, "198.51.100.7"), "staff_a").status_code == 302  # ... the owner not


def test_one_office_address_is_not_locked_out(app) -> None:
    """Everyone behind one NAT (or the reverse proxy) shares an address: 30 failures there for
    other names do not stop a colleague."""
    office = "192.0.2.10"
    for i in range(30):
        assert login(_client(app, office), f"nobody{i}", "x-wrong-pass").status_code in (401, 429)
    assert login(_client(app, office), "staff_b").status_code == 302


def test_backoff_is_shared_by_every_web_process(app) -> None:
    """Two web processes (two apps, one database, as behind a load balancer or with several
    waitress processes): failures made on one count on the other, per account and address, so a
    guesser gets no more tries by spreading them; a success on one clears the pair on both."""
    from callbot.config import load_settings
    from web import create_app

    other = create_app(load_settings(), TESTING=True)
    for i in range(5):  # alternate between the two: 5 failures in all
        assert login(_client(app if i % 2 else other, "203.0.113.77"), "staff_a",
                     "guess-guess-1").status_code == 401
    for web in (app, other):
        r = login(_client(web, "203.0.113.77"), "staff_a", PASSWORD)
        assert r.status_code == 429 and "秒后再试" in r.get_data(as_text=True)
        assert login(_client(web, "198.51.100.8"), "staff_a").status_code == 302  # the owner
        assert login(_client(web, "203.0.113.77"), "staff_b", "guess-guess-1").status_code == 401
    for limiter in (app.extensions["callbot_login_limiter"],
                    other.extensions["callbot_login_limiter"]):
        limiter.base = 0.3
    import time

    time.sleep(0.35)
    assert login(_client(other, "203.0.113.77"), "staff_a").status_code == 302  # cleared ...
    for _ in range(4):  # ... on both: 4 more failures are free again
        assert login(_client(app, "203.0.113.77"), "staff_a", "guess-guess-1").status_code == 401


def test_backoff_grows_then_lets_the_owner_in(app) -> None:
    import time

    limiter = app.extensions["callbot_login_limiter"]
    limiter.base = 0.4
    c = _client(app, "203.0.113.9")
    for _ in range(5):
        assert login(c, "super", "wrong-pass-99").status_code == 401
    assert login(c, "super", PASSWORD).status_code == 429
    time.sleep(0.45)
    assert login(c, "super", "wrong-pass-99").status_code == 401  # one more try, then 0.8 s
    time.sleep(0.45)
    assert login(c, "super", PASSWORD).status_code == 429
    time.sleep(0.4)
    assert login(c, "super", PASSWORD).status_code == 302


def test_failed_logins_are_audited(app, login_as) -> None:
    from callbot.accounts import AuditLog

    login(_client(app, "203.0.113.5"), "staff_a", "wrong-pass-12")
    login(_client(app, "203.0.113.5"), "no_such_user", "wrong-pass-12")
    with app.extensions["callbot_sessionmaker"]() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == "login_failed")
                         .order_by(AuditLog.id)).all()
    assert [(r.user_name, r.ip) for r in rows] == [("staff_a", "203.0.113.5"),
                                                   ("no_such_user", "203.0.113.5")]
    html = login_as("admin").get("/admin/audit?action=login_failed").get_data(as_text=True)
    assert "no_such_user" in html and "203.0.113.5" in html


def test_login_timing_does_not_tell_which_names_exist(app) -> None:
    """An unknown name takes as long as a known one with a wrong password (the same scrypt)."""
    import statistics
    import time

    app.extensions["callbot_login_limiter"].free = 10**6
    c = app.test_client()

    def took(name: str) -> float:
        token = csrf_token(c, "/login")
        t0 = time.perf_counter()
        c.post("/login", data={"name": name, "password": "wrong-pass-12", "csrf_token": token})
        return time.perf_counter() - t0

    took("staff_a")
    known = statistics.median(took("staff_a") for _ in range(7))
    unknown = statistics.median(took(f"ghost{i}") for i in range(7))
    assert unknown > 0.6 * known, (unknown, known)


def test_weak_passwords_refused_in_chinese(app, login_as, data_dir) -> None:
    admin = login_as("admin")
    for pw, words in (("12345678", "至少 10 位"), ("password123", "太常见"),
                      ("1234567890", "太常见"), ("aaaaaaaaaaaa", "太常见"),
                      ("新同事新同事新同事新同事", "太常见")):
        token = csrf_token(admin, "/admin/users")
        r = admin.post("/admin/users", data={"name": "新同事", "role": "staff",
                                             "committee": "东风居委会", "password": pw,
                                             "csrf_token": token})
        assert words in r.get_data(as_text=True), pw
    assert login(app.test_client(), "新同事", "password123").status_code == 401
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir))
    r = subprocess.run(callbot_cmd("users", "add", "老王", "--password", "qwertyuiop"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "太常见" in r.stderr


# --- hole 6: committee scoping in every choice list and search ----------------------------------

def _upload_script(c: Any, yaml_text: str, filename: str) -> None:
    import io

    r = c.post("/scripts/upload", data={"csrf_token": csrf_token(c, "/scripts/"),
                                        "file": (io.BytesIO(yaml_text.encode()), filename)},
               content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)[:500]


def test_another_committees_script_is_neither_offered_nor_usable(app, login_as) -> None:
    import re

    from tests.web.conftest import GOOD_YAML
    from tests.web.helpers import make_campaign

    make_campaign(app)  # a list (no committee) both may use
    west = login_as("staff_b")
    _upload_script(west, GOOD_YAML.replace("停水通知", "西湖停水通知"), "water.yaml")
    east = login_as("staff_a")
    html = east.get("/campaigns/new").get_data(as_text=True)
    assert "西湖停水通知" not in html
    values = re.findall(r'<option[^>]*value="([^"]*)"', html)
    assert "mask_reservation" in values and not [v for v in values if "/" in v], values
    assert "water_check" in re.findall(r'<option[^>]*value="([^"]*)"',
                                       west.get("/campaigns/new").get_data(as_text=True))
    path = str((__import__("pathlib").Path(app.config["SCRIPTS_DIR"]) / "water_check.yaml").resolve())
    form = {"csrf_token": csrf_token(east, "/campaigns/new"), "name": "偷用", "list_id": 1,
            "lines": 2, "windows": "09:00-11:30", "max_attempts": 3, "retry_minutes": 30,
            "daily_cap": 3}
    for value in ("water_check", path, "/etc/passwd"):
        r = east.post("/campaigns/new", data={**form, "script": value})
        assert r.status_code == 400, value
    from callbot.campaign.models import Campaign

    with app.extensions["callbot_sessionmaker"]() as s:
        assert s.scalars(select(Campaign.name)).all() == ["口罩登记一"]
    r = west.post("/campaigns/new", data={**form, "name": "西湖停水",
                                          "csrf_token": csrf_token(west, "/campaigns/new"),
                                          "script": "water_check"})
    assert r.status_code == 302
    with app.extensions["callbot_sessionmaker"]() as s:
        c = s.scalar(select(Campaign).where(Campaign.name == "西湖停水"))
        assert c.script.endswith("water_check.yaml")  # the campaign still names the file it runs


def test_staff_without_committee_sees_nothing(app, login_as) -> None:
    from callbot.accounts import create_user
    from tests.web.helpers import make_campaign

    cid = make_campaign(app)
    with app.extensions["callbot_sessionmaker"]() as s:
        create_user(s, "无居委会", PASSWORD, "staff", None)
        s.commit()
    c = login_as("无居委会")
    home = c.get("/")
    assert home.status_code == 200 and "还没有分配居委会" in home.get_data(as_text=True)
    for url in ("/campaigns/", f"/campaigns/{cid}", f"/results/{cid}", f"/results/{cid}/export.xlsx",
                "/lists/", "/scripts/", "/campaigns/new", "/alerts/"):
        r = c.get(url)
        assert r.status_code == 403, (url, r.status_code)
        assert "还没有分配居委会" in r.get_data(as_text=True)
    assert c.get("/account/password").status_code == 200
    assert c.post("/logout", data={"csrf_token": csrf_token(c, "/")}).status_code == 302


def test_staff_added_without_committee_gets_the_installations(app, login_as, data_dir) -> None:
    """Accounts made from now on are always assigned: an empty committee is the installation's."""
    committee = app.extensions["callbot_settings"].committee
    admin = login_as("admin")
    r = admin.post("/admin/users", data={"name": "新人", "role": "staff", "committee": "",
                                         "password": "good-pass-4711",
                                         "csrf_token": csrf_token(admin, "/admin/users")})
    assert r.status_code == 302
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir))
    r = subprocess.run(callbot_cmd("users", "add", "新人二", "--password", "good-pass-4711"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and committee in r.stdout, r.stdout + r.stderr
    with app.extensions["callbot_sessionmaker"]() as s:
        assert set(s.scalars(select(User.committee).where(User.name.in_(["新人", "新人二"])))) \
            == {committee}


def test_supervisor_cannot_recover_masked_digits_by_search(app, login_as) -> None:
    from tests.web.helpers import make_campaign

    cid = make_campaign(app)  # 张三 13800138000 among others
    sup = login_as("super")

    def found(client: Any, q: str) -> bool:
        return "张三" in client.get(f"/campaigns/{cid}", query_string={"q": q}).get_data(as_text=True)

    assert found(sup, "138****8000") and found(sup, "8000") and found(sup, "张三")
    # the middle digits are hidden from a supervisor: guessing them tells nothing
    assert not found(sup, "0013") and not found(sup, "13800138000") and not found(sup, "3800")
    staff = login_as("staff_a")  # staff see whole numbers on the contact page: they may search them
    assert found(staff, "0013") and found(staff, "13800138000")


# --- hole 8: the demo's published-password logins only in its own data dir ----------------------

def test_demo_never_makes_its_logins_in_a_production_data_dir(data_dir, capsys) -> None:
    from callbot.accounts import create_user
    from callbot.campaign.store import open_db
    from callbot.cli.demo import DEMO_PASSWORD, start_demo_web
    from callbot.config import load_settings

    factory = open_db(load_settings())
    with factory() as s:  # a production data dir: a real admin, and an old disabled demo login
        create_user(s, "管理员", PASSWORD, "admin")
        create_user(s, "demo", "old-demo-pass-1", "staff", "东风居委会").active = False
        s.commit()
    web = start_demo_web(0)
    try:
        assert not web.demo_logins
        assert "不会在这里创建或启用公开密码的演示账号" in capsys.readouterr().err
        with factory() as s:
            users = {u.name: u.active for u in s.scalars(select(User))}
        assert users == {"管理员": True, "demo": False}
    finally:
        web.close()
    assert not (data_dir / "demo-data-dir").exists()
    assert DEMO_PASSWORD


def test_demo_dir_logins_retire_when_a_real_account_is_added(data_dir) -> None:
    from callbot.cli.demo import DEMO_PASSWORD, start_demo_web
    from web import create_app

    web = start_demo_web(0)  # a fresh dir: the demo makes it its own
    web.close()
    assert web.demo_logins and (data_dir / "demo-data-dir").is_file()
    web = start_demo_web(0)  # and may run there again
    web.close()
    assert web.demo_logins
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir))
    r = subprocess.run(callbot_cmd("users", "add", "管理员", "--role", "admin",
                                   "--password", "real-admin-pass-1"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "已停用公开密码的演示账号" in r.stdout, r.stdout + r.stderr
    app = create_app(TESTING=True)
    assert login(app.test_client(), "demo", DEMO_PASSWORD).status_code == 401
    web = start_demo_web(0)  # from now on the dir is a real one
    web.close()
    assert not web.demo_logins
    assert login(app.test_client(), "supervisor", DEMO_PASSWORD).status_code == 401


# --- smaller: no 500 on huge ids, pages, queries, or JSON that is not an object -----------------

HUGE = 10**30


def test_no_500_on_huge_ids_pages_queries_and_odd_json(app, login_as) -> None:
    from flask import url_for

    cid = __import__("tests.web.helpers", fromlist=["make_campaign"]).make_campaign(app)
    c = login_as("admin")
    token = csrf_token(c, "/")
    args: dict[str, Any] = {"campaign_id": HUGE, "list_id": HUGE, "contact_id": HUGE, "user_id": HUGE,
            "rec_id": HUGE, "alert_id": HUGE, "index": HUGE, "token": "t" * 32,
            "slug": "mask_reservation", "action": "pause", "fmt": "xlsx"}
    checked = 0
    with app.test_request_context():
        huge_urls = [(rule.endpoint, method, url_for(rule.endpoint, **{a: args[a] for a in rule.arguments}))
                     for rule in app.url_map.iter_rules()
                     if {"campaign_id", "list_id", "contact_id", "user_id", "rec_id", "alert_id",
                         "index"} & set(rule.arguments)
                     for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    for endpoint, method, url in huge_urls:
        r = c.open(url, method=method, data={"csrf_token": token})
        assert r.status_code == 404, (endpoint, url, r.status_code)
        checked += 1
    assert checked >= 10
    odd = {"page": str(HUGE), "q": "电" * 5000 + "%_\\", "list_id": str(HUGE),
           "campaign": str(HUGE), "state": "x" * 300, "committee": "-", "action": "x" * 2000,
           "result": "open", "building": "9" * 400, "reason": "x"}
    for endpoint, method, url in route_urls(app, cid):
        if method != "GET":
            continue
        r = c.get(url, query_string=odd)
        assert r.status_code < 500, (endpoint, url, r.status_code)
    for body in ([1, 2], "text", 7, None, {"state": [1]}, {"state": {"replies": "abc"}},
                 {"state": {"replies": [{"a": 1}]}, "reply": ["x"]}, {"vars": {"a": 1}}):
        r = c.post("/scripts/mask_reservation/try", json=body, headers={"X-CSRFToken": token})
        assert r.status_code in (200, 400), (body, r.status_code)
    r = c.post("/scripts/mask_reservation/try", data=b"{not json", content_type="application/json",
               headers={"X-CSRFToken": token})
    assert r.status_code == 400


def test_database_and_pending_uploads_are_private(app, login_as, data_dir) -> None:
    import stat

    from tests.web.conftest import GOOD_ROWS, make_xlsx

    def mode(p: Any) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    db_files = [p for p in data_dir.iterdir() if p.name.startswith("callbot.db")]
    assert data_dir / "callbot.db" in db_files and len(db_files) >= 2  # the -wal beside it
    for p in db_files:
        assert mode(p) & 0o077 == 0, (p.name, oct(mode(p)))
    c = login_as("staff_a")
    r = upload(c, make_xlsx(GOOD_ROWS), "居民.xlsx")
    assert r.status_code == 302
    uploads = data_dir / "uploads"
    assert mode(uploads) == 0o700
    pending = list(uploads.iterdir())
    assert {p.suffix for p in pending} == {".bin", ".json"}
    assert all(mode(p) == 0o600 for p in pending), [oct(mode(p)) for p in pending]


@pytest.mark.browser
def test_progress_bars_render_under_the_csp_in_chromium(app) -> None:
    """The CSP (style-src 'self') used to drop the bars' inline widths, so a 0 % bar drew full."""
    from tests.web.browser import chromium, need_chromium, new_page
    from tests.web.helpers import finish_call, make_campaign
    from web.server import start_server

    need_chromium()
    empty = make_campaign(app, name="一个都没打")
    half = make_campaign(app, name="打了一些")
    for name in ("张三", "王五"):
        finish_call(app, half, name, "answered", completed=True, result="done")
    srv = start_server(app, "127.0.0.1", 0)
    problems: list[str] = []
    try:
        with chromium() as browser:
            page = new_page(browser, [])
            page.on("console", lambda m: problems.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.goto(srv.url + "login")
            page.fill("#name", "staff_a")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(srv.url)

            def fill(url: str, row: str | None = None) -> float:
                page.goto(srv.url + url.lstrip("/"))
                scope = page.locator("tr", has_text=row) if row else page
                box = scope.locator(".progress").first.bounding_box()
                rect = scope.locator(".progress > *").first.bounding_box()  # the fill
                return (rect["width"] if rect else 0.0) / box["width"]

            assert fill("/campaigns/", "一个都没打") == 0.0
            assert 0.6 < fill("/campaigns/", "打了一些") < 0.7  # 2 of 3 contacts
            assert fill(f"/campaigns/{empty}") == 0.0
            assert 0.6 < fill(f"/campaigns/{half}") < 0.7
            for url in ("/campaigns/", f"/results/{half}", "/scripts/mask_reservation"):
                page.goto(srv.url + url.lstrip("/"))
        assert problems == [], problems
    finally:
        srv.close()


def test_settings_page_says_edge_sends_prompt_text_online(app, login_as) -> None:
    admin = login_as("admin")
    base = app.extensions["callbot_settings"]
    for engine, words in (("edge", "发送到微软的语音合成服务"), ("espeak", "离线，在本机合成")):
        app.extensions["callbot_settings"] = base.__class__(**{**base.__dict__, "tts_engine": engine})
        assert words in admin.get("/admin/settings").get_data(as_text=True), engine
