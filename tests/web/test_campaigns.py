"""Campaign, results and report pages through the test client."""

from __future__ import annotations

import io
import json

import openpyxl
from sqlalchemy import select

from callbot.accounts import AuditLog
from callbot.campaign.models import Campaign
from tests.web.conftest import XSS, csrf_token, post
from tests.web.helpers import finish_call, make_campaign


def test_create_and_control_campaign(app, login_as) -> None:
    c = login_as("staff_a")
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts
    from tests.web.conftest import GOOD_ROWS, make_xlsx

    with app.extensions["callbot_sessionmaker"]() as s:
        lst = save_list(s, "名单A", parse_contacts(make_xlsx(GOOD_ROWS), "a.xlsx"))
        s.commit()
        list_id = lst.id
    html = c.get(f"/campaigns/new?list_id={list_id}").get_data(as_text=True)
    assert "口罩预约登记" in html and "独居老人关爱回访" in html and "名单A（3 人）" in html
    token = csrf_token(c, "/campaigns/new")
    form = {"csrf_token": token, "name": "三月口罩", "list_id": list_id, "script": "mask_reservation",
            "lines": 2, "windows": "09:00-11:30,14:00-20:00", "max_attempts": 3,
            "retry_minutes": 30, "daily_cap": 3}
    bad = c.post("/campaigns/new", data={**form, "windows": "9点到11点"})
    assert bad.status_code == 400 and "呼叫时段" in bad.get_data(as_text=True)
    r = c.post("/campaigns/new", data=form)
    assert r.status_code == 302
    cid = int(r.headers["Location"].rsplit("/", 1)[1])
    page = c.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert "草稿" in page and "开始外呼" in page and XSS not in page and "&lt;script&gt;" in page
    p = c.get(f"/campaigns/{cid}/progress.json").get_json()
    assert p["contacts"] == 3 and p["finished"] == 0 and p["percent"] == 0 and p["state"] == "draft"
    for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running"),
                          ("cancel", "cancelled")):
        r = post(c, f"/campaigns/{cid}/{action}")
        assert r.status_code == 302
        with app.extensions["callbot_sessionmaker"]() as s:
            assert s.get(Campaign, cid).state == state
    r = post(c, f"/campaigns/{cid}/start")  # not allowed after cancel: message, no change
    assert "只能启动草稿" in c.get(r.headers["Location"]).get_data(as_text=True)
    with app.extensions["callbot_sessionmaker"]() as s:
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions[-4:] == ["campaign_start", "campaign_pause", "campaign_resume", "campaign_cancel"]
    assert "campaign_create" in actions
    # another committee's staff cannot see or act on it; the supervisor can read
    other = login_as("staff_b")
    assert other.get(f"/campaigns/{cid}").status_code == 404
    assert post(other, f"/campaigns/{cid}/pause").status_code == 404
    sup = login_as("super")
    assert sup.get(f"/campaigns/{cid}").status_code == 200
    assert "开始外呼" not in sup.get(f"/campaigns/{cid}").get_data(as_text=True)


def test_mask_results_progress_export_and_report(app, login_as) -> None:
    cid = make_campaign(app)
    staff = login_as("staff_a")
    post(staff, f"/campaigns/{cid}/start")
    transcript = [{"role": "bot", "text": "张三您好", "t": 0.1}, {"role": "callee", "text": "需要", "t": 2.0}]
    finish_call(app, cid, "张三", "answered", {"need_masks": True, "masks": 2}, True, "completed",
                transcript)
    finish_call(app, cid, XSS, "no_answer")
    finish_call(app, cid, XSS, "answered", {"need_masks": True, "masks": 3}, True, "completed")
    p = staff.get(f"/campaigns/{cid}/progress.json").get_json()
    assert (p["finished"], p["dialled"], p["answered"], p["percent"]) == (2, 3, 2, 66.7)
    html = staff.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert "口罩盒数：2" in html and XSS not in html  # the template's field label, not its key
    html = staff.get(f"/campaigns/{cid}/contacts/1").get_data(as_text=True)
    assert "张三您好" in html and "需要" in html and "13800138000" in html  # whole number for staff
    assert "需要口罩" in html and "need_masks" not in html
    html = staff.get(f"/results/{cid}").get_data(as_text=True)
    assert '<div class="num" id="total-masks">5</div>' in html and "3号楼" in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "张三" not in staff.get(f"/results/{cid}?q=102").get_data(as_text=True).split('id="distribution"')[1]
    # exports: formula-safe, audited
    r = staff.get(f"/results/{cid}/export.xlsx")
    assert r.status_code == 200 and r.data[:2] == b"PK"
    wb = openpyxl.load_workbook(io.BytesIO(r.data))
    assert wb.sheetnames[0] == "明细" and "口罩" in wb.sheetnames
    detail = list(wb["明细"].iter_rows(values_only=True))
    head = detail[0]  # answer columns under the template's labels, values as staff read them
    row = {h: v for h, v in zip(head, detail[[r[1] for r in detail].index("张三")], strict=True)}
    assert (row["需要口罩"], row["口罩盒数"], row["状态"], row["结果"]) == ("是", 2, "已结束", "已完成")
    r = staff.get(f"/results/{cid}/export.csv")
    assert r.data.startswith(b"\xef\xbb\xbf") and XSS.encode() in r.data
    with app.extensions["callbot_sessionmaker"]() as s:
        assert [a.detail for a in s.scalars(select(AuditLog).where(AuditLog.action == "export"))] == ["xlsx", "csv"]
    # the supervisor: report yes, export no; numbers masked on the results page
    sup = login_as("super")
    assert sup.get(f"/results/{cid}/export.xlsx").status_code == 403
    assert "13800138000" not in sup.get(f"/campaigns/{cid}/contacts/1").get_data(as_text=True)
    html = sup.get(f"/reports/{cid}").get_data(as_text=True)
    assert "按次接通率" in html and "按人接通率" in html and "<svg" in html
    assert 'id="rate-attempts" data-value="0.6667">66.7%' in html
    assert 'id="rate-contacts" data-value="0.6667">66.7%' in html
    assert XSS not in html
    assert staff.get(f"/reports/{cid}").status_code == 403
    summary = sup.get("/reports/").get_data(as_text=True)
    assert "口罩登记一" in summary


def test_welfare_follow_up_order(app, login_as) -> None:
    cid = make_campaign(app, "welfare_check", "关怀一")
    finish_call(app, cid, "王五", "no_answer", result="unreachable")
    finish_call(app, cid, "张三", "answered", {"welfare": "ok"}, True, "completed")
    finish_call(app, cid, XSS, "answered", {"welfare": "needs_help", "note": "我不舒服"}, True, "completed")
    html = login_as("staff_a").get(f"/results/{cid}").get_data(as_text=True)
    table = html.split('id="follow-up"')[1]
    assert table.index("需要帮助") < table.index("联系不上") and "我不舒服" in table
    assert "张三" not in table  # ok → not on the follow-up list
    assert XSS not in html


def test_progress_json_is_json(app, login_as) -> None:
    cid = make_campaign(app)
    r = login_as("super").get(f"/campaigns/{cid}/progress.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert json.loads(r.data)["lines"] == 2


def test_progress_says_when_the_window_opens(app, login_as) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from callbot.campaign import service

    h1 = (datetime.now(ZoneInfo("Asia/Shanghai")).hour + 2) % 24
    cid = make_campaign(app)
    with app.extensions["callbot_sessionmaker"]() as s:
        c = service.get_campaign(s, cid)
        c.windows = [[f"{h1:02d}:00", f"{h1 + 1:02d}:00"]]
        service.start(s, cid)
        s.commit()
    p = login_as("staff_a").get(f"/campaigns/{cid}/progress.json").get_json()
    assert p["window_open"] is False and p["next_open"].endswith(f"{h1:02d}:00")


def test_campaign_page_says_why_the_dispatcher_paused_it(app, login_as) -> None:
    """The line is down: the page and its progress poll show the Chinese reason (the real-SIP
    pause is tests/campaign/test_fault_campaign.py)."""
    from callbot.campaign import service

    cid = make_campaign(app)
    reason = "线路中断，已自动暂停：SIP 对端 10.0.0.5:5060 无响应（2 秒内没有回应）。线路恢复后将自动继续。"
    with app.extensions["callbot_sessionmaker"]() as s:
        service.start(s, cid)
        c = service.get_campaign(s, cid)
        c.state, c.pause_reason = "paused", reason
        s.commit()
    staff = login_as("staff_a")
    page = staff.get(f"/campaigns/{cid}").get_data(as_text=True)
    assert reason in page
    assert staff.get(f"/campaigns/{cid}/progress.json").get_json()["pause_reason"] == reason
    with app.extensions["callbot_sessionmaker"]() as s:
        c = service.get_campaign(s, cid)
        c.state, c.pause_reason = "running", None
        s.commit()
    assert staff.get(f"/campaigns/{cid}/progress.json").get_json()["pause_reason"] is None


def test_script_tags_in_every_name_stay_text(app, login_as) -> None:
    """List, campaign, address (chart label) and answer text named <script>: escaped everywhere."""
    from callbot.campaign import service
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts
    from tests.web.conftest import make_xlsx

    rows = [["姓名", "电话", "地址"], [XSS, "13800138000", XSS + "号楼"]]
    with app.extensions["callbot_sessionmaker"]() as s:
        lst = save_list(s, XSS, parse_contacts(make_xlsx(rows), "x.xlsx"))
        c = service.create_campaign(s, XSS + "任务", lst.id, "mask_reservation")
        s.commit()
        cid = c.id
    finish_call(app, cid, XSS, "answered", {"need_masks": True, "masks": 1, "note": XSS}, True,
                "completed", [{"role": "callee", "text": XSS, "t": 1.0}])
    staff, sup = login_as("staff_a"), login_as("super")
    pages = [(staff, "/"), (staff, "/lists/"), (staff, f"/lists/{lst.id}"), (staff, "/campaigns/"),
             (staff, f"/campaigns/{cid}"), (staff, f"/campaigns/{cid}/contacts/1"),
             (staff, f"/results/{cid}"), (sup, "/reports/"), (sup, f"/reports/{cid}"),
             (staff, "/campaigns/new")]
    for client, url in pages:
        html = client.get(url).get_data(as_text=True)
        assert XSS not in html, url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;号楼" in staff.get(f"/results/{cid}").get_data(as_text=True)


def test_exports_are_formula_safe(app, login_as) -> None:
    from callbot.campaign import service
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts

    data = '姓名,电话,地址\n"=HYPERLINK(""http://x"",""点我"")",13800138000,@SUM(A1)\n'.encode()
    with app.extensions["callbot_sessionmaker"]() as s:
        lst = save_list(s, "公式", parse_contacts(data, "f.csv"))
        cid = service.create_campaign(s, "公式任务", lst.id, "mask_reservation").id
        s.commit()
    c = login_as("staff_a")
    wb = openpyxl.load_workbook(io.BytesIO(c.get(f"/results/{cid}/export.xlsx").data))
    row = [v for v in next(wb["明细"].iter_rows(min_row=2, values_only=True))]
    assert "'=HYPERLINK(\"http://x\",\"点我\")" in row and "'@SUM(A1)" in row
    csv_text = c.get(f"/results/{cid}/export.csv").data.decode("utf-8-sig")
    assert "'=HYPERLINK" in csv_text and "\n=" not in csv_text and ",=" not in csv_text


def test_the_form_says_edge_is_online_and_offers_to_keep_names_on_the_box(app, login_as) -> None:  # type: ignore[no-untyped-def]
    """Where a committee sets up a campaign: edge-tts is Microsoft's online service and the
    prompt text, names included, goes there unless 个人信息只在本机合成 is chosen; the choice
    is stored as the campaign's tts_personal and shown on its page."""
    c = login_as("staff_a")
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts
    from tests.web.conftest import GOOD_ROWS, make_xlsx

    with app.extensions["callbot_sessionmaker"]() as s:
        list_id = save_list(s, "名单P", parse_contacts(make_xlsx(GOOD_ROWS), "p.xlsx")).id
        s.commit()
    base = app.extensions["callbot_settings"]
    app.extensions["callbot_settings"] = base.__class__(**{**base.__dict__, "tts_engine": "edge"})
    html = c.get("/campaigns/new").get_data(as_text=True)
    assert "微软的在线服务" in html and "姓名" in html and "个人信息只在本机合成" in html
    token = csrf_token(c, "/campaigns/new")
    form = {"csrf_token": token, "list_id": list_id, "script": "mask_reservation", "lines": 2,
            "windows": "09:00-20:00", "max_attempts": 3, "retry_minutes": 30, "daily_cap": 3}
    ids = {}
    for choice in ("offline", "online"):
        r = c.post("/campaigns/new", data={**form, "name": f"口罩 {choice}",
                                           "tts_personal": choice})
        assert r.status_code == 302, r.get_data(as_text=True)
        ids[choice] = int(r.headers["Location"].rsplit("/", 1)[1])
    bad = c.post("/campaigns/new", data={**form, "name": "口罩 x", "tts_personal": "cloud"})
    assert bad.status_code == 400
    with app.extensions["callbot_sessionmaker"]() as s:
        assert {k: s.get(Campaign, v).tts_personal for k, v in ids.items()} == {
            "offline": "offline", "online": "online"}
    assert "个人信息只在本机合成" in c.get(f"/campaigns/{ids['offline']}").get_data(as_text=True)
    assert "个人信息只在本机合成" not in c.get(f"/campaigns/{ids['online']}").get_data(as_text=True)
    # the same choice from the command line
    import subprocess

    from tests.conftest import callbot_cmd, env_for_subprocess

    out = subprocess.run(callbot_cmd("campaign", "create", "CLI 本机", "--list", "名单P", "--script",
                                     "mask_reservation", "--tts-personal", "offline", "--json"),
                         env=env_for_subprocess(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tts_personal"] == "offline"
    bad = subprocess.run(callbot_cmd("campaign", "create", "CLI x", "--list", "名单P", "--script",
                                     "mask_reservation", "--tts-personal", "cloud"),
                         env=env_for_subprocess(), capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "offline" in bad.stderr
