"""The web app shows 'call me back later' in Chinese: the welfare follow-up list puts residents
who asked for a call back after those who need help and before the unreachable, labelled 约定回电,
filterable, counted; a contact's page names the call's end 约定回电."""

from __future__ import annotations

import io

import openpyxl
from sqlalchemy import select

from callbot.campaign.models import Attempt, Contact
from tests.web.conftest import XSS
from tests.web.helpers import finish_call, make_campaign


def _mark_callback(app, cid: int, name: str) -> int:  # type: ignore[no-untyped-def]
    """The last attempt of *name* ended the way a busy resident's call ends."""
    with app.extensions["callbot_sessionmaker"]() as s:
        a = s.scalars(select(Attempt).join(Contact, Contact.id == Attempt.contact_id)
                      .where(Attempt.campaign_id == cid, Contact.name == name)
                      .order_by(Attempt.id.desc())).first()
        a.ended = "callback"
        contact_id = a.contact_id
        s.commit()
    return contact_id


def test_welfare_follow_up_shows_call_back_requests(app, login_as) -> None:  # type: ignore[no-untyped-def]
    cid = make_campaign(app, "welfare_check", "关怀回电")
    # 张三 (first row) asked for a call back three times and was never completed
    for _ in range(2):
        finish_call(app, cid, "张三", "answered", transcript=[
            {"role": "callee", "text": "我现在没空，晚点再打", "t": 3.0}])
        contact_id = _mark_callback(app, cid, "张三")
    finish_call(app, cid, "张三", "answered", result="callback")
    _mark_callback(app, cid, "张三")
    finish_call(app, cid, XSS, "answered", {"welfare": "needs_help", "note": "我不舒服"}, True,
                "completed")
    finish_call(app, cid, "王五", "no_answer", result="unreachable")

    staff = login_as("staff_a")
    html = staff.get(f"/results/{cid}").get_data(as_text=True)
    assert 'id="callback-count">1<' in html
    table = html.split('id="follow-up"')[1]
    assert table.index("需要帮助") < table.index("约定回电") < table.index("联系不上")
    assert table.index("我不舒服") < table.index("张三")
    assert ">callback<" not in table  # no raw key
    only = staff.get(f"/results/{cid}?reason=callback").get_data(as_text=True)
    only = only.split('id="follow-up"')[1].split("</table>")[0]
    assert "张三" in only and "王五" not in only and "我不舒服" not in only

    page = staff.get(f"/campaigns/{cid}/contacts/{contact_id}").get_data(as_text=True)
    assert "结束原因 约定回电" in page and "结束原因 callback" not in page
    listing = staff.get(f"/campaigns/{cid}?result=callback").get_data(as_text=True)
    assert "张三" in listing and "王五" not in listing

    wb = openpyxl.load_workbook(io.BytesIO(staff.get(f"/results/{cid}/export.xlsx").data))
    details = list(wb["明细"].iter_rows(values_only=True))
    col = details[0].index("结果")
    assert [r[col] for r in details[1:]] == ["约定回电未接通", "已完成", "联系不上"]
    reasons = [r[4] for r in list(wb["关怀"].iter_rows(values_only=True))[1:]]
    assert reasons == ["需要帮助", "约定回电未接通", "联系不上"]
