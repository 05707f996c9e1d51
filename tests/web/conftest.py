"""Web fixtures: an app on a fresh data dir, users of each role, and a CSRF-aware client."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "correct-horse-1"
_CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|data-csrf="([^"]+)"')


@pytest.fixture
def app(data_dir: Path):  # type: ignore[no-untyped-def]
    from callbot.accounts import create_user
    from callbot.config import load_settings
    from web import create_app

    app = create_app(load_settings(), TESTING=True)
    factory = app.extensions["callbot_sessionmaker"]
    with factory() as s:
        create_user(s, "staff_a", PASSWORD, "staff", "东风居委会")
        create_user(s, "staff_b", PASSWORD, "staff", "西湖居委会")
        create_user(s, "super", PASSWORD, "supervisor")
        create_user(s, "admin", PASSWORD, "admin")
        s.commit()
    return app


def csrf_token(client: Any, url: str = "/login") -> str:
    """A CSRF token valid for this client's session, read from a page's form."""
    html = client.get(url).get_data(as_text=True)
    m = _CSRF_RE.search(html)
    assert m, f"no csrf token on {url}"
    return m.group(1) or m.group(2)


def login(client: Any, name: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client, "/login")
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token})


@pytest.fixture
def login_as(app) -> Callable[[str], Any]:  # type: ignore[no-untyped-def]
    """``login_as("staff_a")`` → a logged-in test client."""

    def make(name: str) -> Any:
        c = app.test_client()
        r = login(c, name)
        assert r.status_code == 302, r.get_data(as_text=True)
        return c

    return make


def post(client: Any, url: str, data: dict | None = None, page: str = "/", **kw: Any) -> Any:
    """POST with the session's CSRF token, as the browser's form would."""
    data = dict(data or {})
    data["csrf_token"] = csrf_token(client, page)
    return client.post(url, data=data, **kw)


def make_xlsx(rows: list[list[Any]]) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


XSS = "<script>alert(1)</script>"

GOOD_ROWS = [
    ["姓名", "电话", "地址", "备注", "楼号"],
    ["张三", "13800138000", "3号楼101", "", "3"],
    [XSS, "13900139000", "3号楼102", "", "3"],
    ["李四", "12345", "5号楼201", "", "5"],          # bad number → row 4
    ["王五", "021-6123 4567", "5号楼202", "", "5"],
    ["赵六", "13800138000", "3号楼101", "重复", "3"],  # duplicate of row 2
]


GOOD_YAML = """\
name: water_check
title: 停水通知
requires: [姓名]
fields:
  heard: bool
start: greet
steps:
  greet:
    ask: "{{ 姓名 }}您好，明天上午停水，您知道了吗？知道请按1。"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {heard: true}, next: bye}
      no: {set: {heard: false}, next: bye}
  bye:
    say: "谢谢，再见。"
    end: completed
"""
"""A valid staff template (停水通知) the script pages upload and edit."""
