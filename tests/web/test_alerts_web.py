"""待处理 in the web app (test client): the count on every page, the list (urgent first, filters,
committee scope), the follow-up workflow and its audit trail, the supervisor's per-committee
view, and the admin's committee settings (group robot, duty phone). Chromium: test_browser_alerts."""

from __future__ import annotations

import io
import re

import openpyxl
from sqlalchemy import select

from callbot import alerts
from callbot.accounts import AuditLog, Ownership
from callbot.alerts import Alert
from callbot.campaign.models import Contact
from callbot.committees import CommitteeSettings
from tests.web.conftest import post
from tests.web.helpers import finish_call, make_campaign


def _alert(app, cid: int, name: str, reason: str = "needs_help", urgent: bool = False,  # type: ignore[no-untyped-def]
           said: str = "") -> int:
    with app.extensions["callbot_sessionmaker"]() as s:
        ct = s.scalar(select(Contact).join(Contact.list).where(Contact.name == name)
                      .order_by(Contact.id.desc()))
        a = alerts.raise_alert(s, campaign_id=cid, contact_id=ct.id, reason=reason,
                               urgent=urgent, said=said)
        s.commit()
        return a.id


def _owned(app, cid: int, committee: str) -> None:  # type: ignore[no-untyped-def]
    with app.extensions["callbot_sessionmaker"]() as s:
        s.add(Ownership(kind="campaign", object_id=str(cid), committee=committee,
                        created_by="staff_b"))
        s.commit()


def test_list_urgent_first_with_count_on_every_page(app, login_as) -> None:  # type: ignore[no-untyped-def]
    cid = make_campaign(app, "welfare_check", "关爱一")
    calm = _alert(app, cid, "张三", said="腿有点疼")
    urgent = _alert(app, cid, "王五", urgent=True, said="我摔倒了站不起来")
    c = login_as("staff_a")
    home = c.get("/").get_data(as_text=True)
    assert re.search(r'id="alert-badge" class="count urgent">2<', home)
    html = c.get("/alerts/").get_data(as_text=True)
    assert html.index(f'data-alert="{urgent}"') < html.index(f'data-alert="{calm}"')
    assert "我摔倒了站不起来" in html and "紧急" in html
    assert "13800138000" in html  # staff see the whole number where they must call
    assert c.get("/alerts/summary.json").get_json()["open"] == 2
    sup = login_as("super").get("/alerts/").get_data(as_text=True)
    assert "138****8000" in sup and "13800138000" not in sup


def test_another_committees_alert_is_hidden(app, login_as) -> None:  # type: ignore[no-untyped-def]
    theirs = make_campaign(app, "welfare_check", "西湖关爱")
    _owned(app, theirs, "西湖居委会")
    aid = _alert(app, theirs, "张三", said="西湖的事")
    c = login_as("staff_a")
    assert "西湖的事" not in c.get("/alerts/").get_data(as_text=True)
    assert c.get(f"/alerts/{aid}").status_code == 404
    assert post(c, f"/alerts/{aid}/claim", page="/alerts/").status_code == 404
    assert c.get("/alerts/summary.json").get_json()["open"] == 0
    b = login_as("staff_b")
    assert "西湖的事" in b.get("/alerts/").get_data(as_text=True)
    assert "西湖的事" in b.get("/alerts/?committee=西湖居委会").get_data(as_text=True)
    assert "西湖的事" not in b.get("/alerts/?committee=-").get_data(as_text=True)


def test_follow_up_claim_contact_resolve_reopen_is_audited(app, login_as) -> None:  # type: ignore[no-untyped-def]
    cid = make_campaign(app, "welfare_check", "关爱二")
    finish_call(app, cid, "张三", "answered", answers={"welfare": "needs_help", "note": "腰疼"},
                completed=True, result="completed")
    aid = _alert(app, cid, "张三", said="腰疼")
    c = login_as("staff_a")
    page = f"/alerts/{aid}"
    assert post(c, f"/alerts/{aid}/claim", page=page).status_code == 302
    post(c, f"/alerts/{aid}/contacted", {"note": "已电话联系，下午上门"}, page=page)
    r = post(c, f"/alerts/{aid}/resolved", {"note": ""}, page=page, follow_redirects=True)
    assert "请写一句处理情况" in r.get_data(as_text=True)
    post(c, f"/alerts/{aid}/visited", {"note": "网格员已上门"}, page=page)
    post(c, f"/alerts/{aid}/resolved", {"note": "已送医，家属陪同"}, page=page)
    with app.extensions["callbot_sessionmaker"]() as s:
        a = s.get(Alert, aid)
        assert (a.state, a.claimed_by, a.handled_by) == ("resolved", "staff_a", "staff_a")
        assert a.resolved_at is not None and a.note == "已送医，家属陪同"
        log = s.scalars(select(AuditLog).where(AuditLog.target == f"alert:{aid}")
                        .order_by(AuditLog.id)).all()
    assert [e.action for e in log] == ["alert_claim", "alert_contacted", "alert_visited",
                                       "alert_resolved"]
    assert "已电话联系" in log[1].detail and "待处理 → 已认领" in log[0].detail
    shown = c.get(page).get_data(as_text=True)
    assert "已送医，家属陪同" in shown and "alert_visited" in shown
    assert "已解决" in c.get(f"/results/{cid}").get_data(as_text=True)
    xlsx = c.get(f"/results/{cid}/export.xlsx").data
    ws = openpyxl.load_workbook(io.BytesIO(xlsx))["关怀"]
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    assert rows[0][-3:] == ["跟进状态", "处理人", "处理情况"]
    assert rows[1][-3:] == ["已解决", "staff_a", "已送医，家属陪同"]
    # reopened by someone else: open again, and the reopening is in the log too
    b = login_as("admin")
    post(b, f"/alerts/{aid}/reopen", {"note": "家属说又不舒服了"}, page=page)
    with app.extensions["callbot_sessionmaker"]() as s:
        a = s.get(Alert, aid)
        assert (a.state, a.claimed_by, a.resolved_at) == ("open", None, None)
        assert s.scalar(select(AuditLog.user_name).where(AuditLog.action == "alert_reopen")) == "admin"
    assert login_as("super").post(f"/alerts/{aid}/claim").status_code in (400, 403)


def test_supervisor_sees_open_items_per_committee_and_their_wait(app, login_as) -> None:  # type: ignore[no-untyped-def]
    ours = make_campaign(app, "welfare_check", "关爱三")
    theirs = make_campaign(app, "welfare_check", "关爱四")
    _owned(app, theirs, "西湖居委会")
    _alert(app, ours, "张三")
    _alert(app, theirs, "张三", urgent=True)
    _alert(app, theirs, "王五", reason="unreachable")
    html = login_as("super").get("/alerts/committees").get_data(as_text=True)
    table = html[html.index('id="per-committee"'):html.index('id="open-items"')]
    assert "西湖居委会" in table and "社区居委会" in table  # the demo/CLI's: CALLBOT_COMMITTEE
    row = re.search(r"西湖居委会</a></td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)", table)
    assert row and row.groups() == ("2", "1")
    assert "分钟" in table


def test_admin_sets_a_committees_group_robot_and_duty_phone(app, login_as) -> None:  # type: ignore[no-untyped-def]
    c = login_as("admin")
    page = "/admin/committees"
    r = post(c, page, {"name": "东风居委会", "webhook_url": "qyapi.weixin.qq.com/x"}, page=page)
    assert r.status_code == 400 and "http://" in r.get_data(as_text=True)
    r = post(c, page, {"name": "东风居委会", "duty_number": "call me"}, page=page)
    assert r.status_code == 400 and "值班电话" in r.get_data(as_text=True)
    with app.extensions["callbot_sessionmaker"]() as s:
        assert s.scalar(select(CommitteeSettings)) is None  # nothing stored on bad input
    url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcd-secret-9f3e"
    r = post(c, page, {"name": "东风居委会", "webhook_url": url, "duty_number": "021-6123 4567",
                       "transfer_timeout": "25", "full_phone": "1"}, page=page)
    assert r.status_code == 302
    html = c.get(page).get_data(as_text=True)
    assert "abcd-secret" not in html and "9f3e" in html  # the key stays hidden
    post(c, page, {"name": "东风居委会", "webhook_url": "", "duty_number": "sip:8001@127.0.0.1"},
         page=page)  # an empty webhook keeps the saved one
    with app.extensions["callbot_sessionmaker"]() as s:
        row = s.scalar(select(CommitteeSettings))
        assert (row.webhook_url, row.duty_number, row.full_phone) == (url, "sip:8001@127.0.0.1",
                                                                      False)
        assert s.scalar(select(AuditLog.action).where(AuditLog.action == "committee_settings"))
