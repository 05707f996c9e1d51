"""The holes a live security test found (issue 13), each reproduced through the web app."""

from __future__ import annotations

import subprocess
from typing import Any

from sqlalchemy import select

from callbot.accounts import User
from tests.conftest import callbot_cmd, env_for_subprocess
from tests.web.conftest import PASSWORD, csrf_token, login

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
