"""Lists: upload → preview (mapped columns, bad rows) → confirm; bad files save nothing."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from callbot.campaign.models import Contact, ContactList
from tests.web.conftest import GOOD_ROWS, XSS, csrf_token, make_xlsx
from tests.web.helpers import upload


def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.extensions["callbot_sessionmaker"]() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_upload_preview_confirm(app, login_as) -> None:
    c = login_as("staff_a")
    r = upload(c, make_xlsx(GOOD_ROWS), "三号楼.xlsx", "三号楼名单")
    assert r.status_code == 302
    preview_url = r.headers["Location"]
    assert _count(app, ContactList) == 0 and _count(app, Contact) == 0  # nothing saved yet
    html = c.get(preview_url).get_data(as_text=True)
    assert "尚未保存" in html
    assert "第 4 行" in html and "电话号码" in html               # the bad row with its reason
    assert "第 6 行与第 2 行号码相同" in html                      # the duplicate
    assert "楼号" in html and "模板变量" in html                   # mapped columns
    assert "138****8000" in html and "13800138000" not in html     # masked in the preview
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert _count(app, ContactList) == 0
    # another user cannot confirm this upload
    other = app.test_client()
    from tests.web.conftest import login
    login(other, "staff_b")
    assert other.post(preview_url + "/confirm",
                      data={"csrf_token": csrf_token(other, "/"), "name": "x"}).status_code == 404
    r = c.post(preview_url + "/confirm", data={"csrf_token": csrf_token(c, preview_url),
                                               "name": "三号楼名单"})
    assert r.status_code == 302
    assert _count(app, ContactList) == 1 and _count(app, Contact) == 3
    html = c.get(r.headers["Location"]).get_data(as_text=True)
    assert "已导入名单“三号楼名单”：3 人" in html
    assert XSS not in html and "&lt;script&gt;" in html
    # the pending upload is gone: confirming twice does not import twice
    assert c.post(preview_url + "/confirm", data={"csrf_token": csrf_token(c, "/")}).status_code == 404
    assert _count(app, ContactList) == 1
    # staff of another committee does not see it
    lid = re.search(r"/lists/(\d+)", r.headers["Location"]).group(1)
    assert other.get(f"/lists/{lid}").status_code == 404
    assert "三号楼名单" not in other.get("/lists/").get_data(as_text=True)
    assert "三号楼名单" in login_as("super").get("/lists/").get_data(as_text=True)


def test_discard_saves_nothing(app, login_as) -> None:
    c = login_as("staff_a")
    r = upload(c, make_xlsx(GOOD_ROWS), "a.xlsx")
    url = r.headers["Location"]
    r = c.post(url + "/discard", data={"csrf_token": csrf_token(c, url)})
    assert r.status_code == 302
    assert _count(app, ContactList) == 0
    assert c.get(url).status_code == 404


def test_bad_uploads_show_errors_and_save_nothing(app, login_as) -> None:
    c = login_as("staff_a")
    cases = [
        (b"", "empty.csv", "文件是空的"),
        (b"\x00\x01\x02garbage\xff\xfe" * 50, "garbage.csv", "无法读取"),
        (b"PK\x03\x04not really a zip", "broken.xlsx", "无法读取"),
        ("姓名,地址\n张三,1号楼\n".encode(), "nophone.csv", "找不到电话列"),
        ("姓名,电话\n张三,123\n李四,abc\n".encode(), "allbad.csv", "第 2 行"),
        (b"whatever", "list.pdf", "不支持的文件类型"),
    ]
    for data, name, expected in cases:
        r = upload(c, data, name)
        html = r.get_data(as_text=True)
        assert r.status_code == 400, name
        assert expected in html, (name, html[:2000])
    r = c.post("/lists/upload", data={"csrf_token": csrf_token(c, "/lists/")},
               content_type="multipart/form-data")
    assert r.status_code == 400 and "请选择要上传的文件" in r.get_data(as_text=True)
    assert _count(app, ContactList) == 0 and _count(app, Contact) == 0
    assert not any(p.suffix == ".bin" for p in
                   __import__("pathlib").Path(app.config["UPLOAD_DIR"]).iterdir())


def test_csv_gbk_upload(app, login_as) -> None:
    c = login_as("staff_a")
    data = "姓名,手机\n陈阿姨,139 0013 9000\n".encode("gbk")
    r = upload(c, data, "gbk.csv")
    assert r.status_code == 302
    html = c.get(r.headers["Location"]).get_data(as_text=True)
    assert "陈阿姨" in html and "139****9000" in html


def test_xlsx_zip_bomb_upload_is_refused_in_chinese(app, login_as) -> None:
    """A < 1 MB XLSX that inflates to 600 MB: a clear Chinese message, nothing kept."""
    from tests.contacts.conftest import one_huge_cell, with_part

    c = login_as("staff_a")
    r = upload(c, with_part("xl/worksheets/sheet1.xml", one_huge_cell()), "名单.xlsx")
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "解压后太大" in html
    assert _count(app, ContactList) == 0
    assert not any(p.suffix == ".bin" for p in
                   __import__("pathlib").Path(app.config["UPLOAD_DIR"]).iterdir())
