"""Accounts: hashing, masking, login, rate limit, session cookie, the users CLI."""

from __future__ import annotations

import subprocess

from sqlalchemy import select

from callbot.accounts import AuditLog, User, hash_password, mask_phone, verify_password
from tests.conftest import callbot_cmd, env_for_subprocess
from tests.web.conftest import PASSWORD, csrf_token, login


def test_password_hash_roundtrip_and_salted() -> None:
    h1, h2 = hash_password("秘密-password"), hash_password("秘密-password")
    assert h1 != h2 and h1.startswith("scrypt$")
    assert verify_password(h1, "秘密-password")
    assert not verify_password(h1, "秘密-passwore")
    assert not verify_password("garbage", "x")


def test_mask_phone() -> None:
    assert mask_phone("13800138000") == "138****8000"
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("+862161234567") == "216***4567"
    assert mask_phone("") == ""


def test_login_logout_and_cookie_flags(app) -> None:
    c = app.test_client()
    assert c.get("/").status_code == 302
    r = login(c, "staff_a")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    cookie = r.headers.get("Set-Cookie", "")
    assert "callbot_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = c.get("/").get_data(as_text=True)
    assert "staff_a" in page and "工作人员" in page
    r = c.post("/logout", data={"csrf_token": csrf_token(c, "/")})
    assert r.status_code == 302
    assert c.get("/").status_code == 302
    with app.extensions["callbot_sessionmaker"]() as s:
        assert s.scalar(select(AuditLog).where(AuditLog.action == "login")).user_name == "staff_a"


def test_wrong_password_and_rate_limit(app) -> None:
    c = app.test_client()
    for _ in range(5):
        r = login(c, "staff_a", "wrong-password")
        assert r.status_code == 401
        assert "用户名或密码错误" in r.get_data(as_text=True)
    r = login(c, "staff_a", PASSWORD)  # right password, but blocked now
    assert r.status_code == 429
    assert "登录失败次数过多" in r.get_data(as_text=True)
    assert c.get("/").status_code == 302


def test_open_redirect_refused(app) -> None:
    c = app.test_client()
    token = csrf_token(c, "/login")
    r = c.post("/login?next=//evil.example/x",
               data={"name": "admin", "password": PASSWORD, "csrf_token": token})
    assert r.headers["Location"] == "/"


def test_disabled_user_cannot_log_in(app, login_as) -> None:
    admin = login_as("admin")
    with app.extensions["callbot_sessionmaker"]() as s:
        uid = s.scalar(select(User.id).where(User.name == "staff_b"))
    r = admin.post(f"/admin/users/{uid}/active", data={"csrf_token": csrf_token(admin, "/")})
    assert r.status_code == 302
    assert login(app.test_client(), "staff_b").status_code == 401


def test_admin_adds_user_in_browser_form(app, login_as) -> None:
    admin = login_as("admin")
    token = csrf_token(admin, "/admin/users")
    r = admin.post("/admin/users", data={"name": "新同事", "role": "staff", "committee": "东风居委会",
                                         "password": "短", "csrf_token": token})
    assert "密码至少 10 位" in r.get_data(as_text=True)
    r = admin.post("/admin/users", data={"name": "新同事", "role": "staff", "committee": "东风居委会",
                                         "password": "longenough1", "csrf_token": token})
    assert r.status_code == 302
    assert login(app.test_client(), "新同事", "longenough1").status_code == 302


def test_settings_page_hides_secrets(app, login_as, tmp_path, monkeypatch) -> None:
    conf = tmp_path / "sip.conf"
    conf.write_text("[account]\nusername = robot ; our SIP user\npassword = hunter2secret\n"
                    "password_env = CALLBOT_SIP_PASSWORD\n", "utf-8")
    app.extensions["callbot_settings"] = app.extensions["callbot_settings"].__class__(
        **{**app.extensions["callbot_settings"].__dict__, "sip_conf": conf})
    html = login_as("admin").get("/admin/settings").get_data(as_text=True)
    assert "robot" in html and "hunter2secret" not in html and "已隐藏" in html
    assert "our SIP user" not in html and "CALLBOT_SIP_PASSWORD" in html


def test_users_cli(data_dir) -> None:
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir))
    r = subprocess.run(callbot_cmd("users", "add", "老王", "--role", "supervisor",
                                   "--password", "good-pass-47"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "已添加用户 老王" in r.stdout
    r = subprocess.run(callbot_cmd("users", "add", "老王", "--role", "staff", "--password", "good-pass-47"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "已存在" in r.stderr
    r = subprocess.run(callbot_cmd("users", "add", "x", "--role", "boss", "--password", "good-pass-47"),
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0
    # the password prompt (hidden, confirmed)
    r = subprocess.run(callbot_cmd("users", "add", "小李", "--role", "staff"), input="pass-word-9\npass-word-9\n",
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(callbot_cmd("users", "list"), capture_output=True, text=True, env=env, timeout=60)
    assert "老王\tsupervisor" in r.stdout and "小李\tstaff" in r.stdout


def test_rate_limit_per_name_not_whole_office(app) -> None:
    """Failures for one name block that name; colleagues behind the same address still log in."""
    c = app.test_client()
    for _ in range(5):
        assert login(c, "staff_b", "wrong-password").status_code == 401
    assert login(c, "staff_b", PASSWORD).status_code == 429
    assert login(app.test_client(), "staff_a", PASSWORD).status_code == 302


def test_ensure_user_creates_then_resets(app) -> None:
    from callbot.accounts import ensure_user

    with app.extensions["callbot_sessionmaker"]() as s:
        ensure_user(s, "演示", "demo-pass-1", "staff")
        s.commit()
        ensure_user(s, "演示", "demo-pass-2", "supervisor")
        s.commit()
    assert login(app.test_client(), "演示", "demo-pass-1").status_code == 401
    assert login(app.test_client(), "演示", "demo-pass-2").status_code == 302


def test_start_server_in_a_thread(app) -> None:
    """What ``callbot demo`` uses: waitress on a free port in the background."""
    import urllib.request

    from web.server import start_server

    srv = start_server(app, "127.0.0.1", 0)
    try:
        assert srv.url.startswith("http://127.0.0.1:") and not srv.url.endswith(":0/")
        with urllib.request.urlopen(srv.url + "login", timeout=10) as r:
            assert "登录" in r.read().decode("utf-8")
    finally:
        srv.close()
