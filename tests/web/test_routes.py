"""Every route: unauthenticated → login; wrong role → 403; POST without CSRF → 400."""

from __future__ import annotations

import pytest

from tests.web.conftest import csrf_token
from tests.web.helpers import PUBLIC_ENDPOINTS, make_campaign, route_urls

PUBLIC = PUBLIC_ENDPOINTS
# endpoint -> roles that get 403 (GET and POST alike)
FORBIDDEN = {
    "admin.users": {"staff", "supervisor"},
    "admin.toggle_active": {"staff", "supervisor"},
    "admin.sip_settings": {"staff", "supervisor"},
    "admin.audit_log": {"staff"},
    "reports.index": {"staff"},
    "reports.show": {"staff"},
    "results.export": {"supervisor"},
    "campaigns.new": {"supervisor"},
    "lists.preview": {"supervisor"},
    "lists.upload": {"supervisor"},
    "lists.confirm": {"supervisor"},
    "lists.discard": {"supervisor"},
    "scripts.new": {"supervisor"},
    "scripts.edit": {"supervisor"},
    "scripts.upload": {"supervisor"},
    "campaigns.act": {"supervisor"},
    "recordings.forget": {"staff", "supervisor"},
    "alerts.act": {"supervisor"},
    "admin.committees": {"staff", "supervisor"},
    "admin.committee_test": {"staff", "supervisor"},
}
CSRF_EXEMPT_FROM_LOGIN = {"auth.logout", "scripts.try_it", "auth.password"}
"""POSTs every role may make (a supervisor too): they change nothing but the user's own login."""


@pytest.fixture
def cid(app) -> int:  # type: ignore[no-untyped-def]
    from callbot.alerts import raise_alert

    cid = make_campaign(app)
    with app.extensions["callbot_sessionmaker"]() as s:  # alert 1, so its pages render too
        raise_alert(s, campaign_id=cid, contact_id=1, reason="human", said="我要找人工")
        s.commit()
    return cid


def test_every_route_needs_login(app, cid) -> None:
    routes = list(route_urls(app, cid))
    assert len(routes) >= 30
    c = app.test_client()
    token = csrf_token(c, "/login")
    for endpoint, method, url in routes:
        r = c.open(url, method=method, data={"csrf_token": token})
        assert r.status_code == 302, (endpoint, method, r.status_code)
        assert r.headers["Location"].startswith("/login"), (endpoint, url)


@pytest.mark.parametrize("role_user", ["staff_a", "super"])
def test_wrong_role_is_403(app, cid, login_as, role_user) -> None:
    role = {"staff_a": "staff", "super": "supervisor"}[role_user]
    c = login_as(role_user)
    token = csrf_token(c, "/")
    checked = 0
    for endpoint, method, url in route_urls(app, cid):
        if role not in FORBIDDEN.get(endpoint, set()):
            continue
        r = c.open(url, method=method, data={"csrf_token": token})
        assert r.status_code == 403, (endpoint, method, r.status_code)
        assert "没有权限" in r.get_data(as_text=True)
        checked += 1
    assert checked >= (7 if role == "staff" else 14)
    if role == "supervisor":  # read-only: every other POST is refused as well
        for endpoint, method, url in route_urls(app, cid):
            if method == "POST" and endpoint not in CSRF_EXEMPT_FROM_LOGIN:
                r = c.post(url, data={"csrf_token": token})
                assert r.status_code == 403, (endpoint, r.status_code)


def test_post_without_csrf_is_400(app, cid, login_as) -> None:
    c = login_as("admin")
    n = 0
    for endpoint, method, url in route_urls(app, cid):
        if method != "POST":
            continue
        r = c.post(url, data={"name": "x"})
        assert r.status_code == 400, (endpoint, r.status_code)
        assert "CSRF" in r.get_data(as_text=True)
        n += 1
    assert n >= 10
    # the login form too
    assert app.test_client().post("/login", data={"name": "admin", "password": "x"}).status_code == 400


def test_every_get_page_renders_for_admin(app, cid, login_as) -> None:
    c = login_as("admin")
    for endpoint, method, url in route_urls(app, cid):
        if method != "GET" or endpoint in ("lists.preview", "scripts.prompt_audio",
                                              "recordings.audio"):  # tests/web/test_voice.py
            continue
        r = c.get(url, follow_redirects=True)  # a built-in's edit leads to "copy as new"
        assert r.status_code == 200, (endpoint, url, r.status_code)
        if r.mimetype == "text/html":
            assert 'lang="zh-CN"' in r.get_data(as_text=True)
            assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
