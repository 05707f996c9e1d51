"""One word per status: the same call outcome and the same final result read the same in the
CLI report, the web pages and the XLSX export (a real Flask app, the real CLI in a subprocess,
the real export), and a code that means two things (``unreachable``: one call the network could
not put through, a resident never reached) reads as two different words."""

from __future__ import annotations

import io
import re
import subprocess
from typing import Any

import openpyxl

from callbot import labels
from callbot.campaign import service
from callbot.campaign.lists import save_list
from callbot.contacts import parse_contacts
from tests.conftest import callbot_cmd, env_for_subprocess
from tests.web.conftest import make_xlsx
from tests.web.helpers import finish_call

# name, phone, the last call's outcome, the contact's result
CALLS = [
    ("张三", "13800138000", "busy", "unreachable"),
    ("李四", "13900139000", "invalid_number", "invalid_number"),
    ("王五", "13700137000", "answered", "completed"),
    ("赵六", "13600136000", "unreachable", "unreachable"),
    ("钱七", "13500135000", "answered", "dnc"),
    ("孙八", "13300133000", "no_answer", "callback"),
]


def _campaign(app: Any) -> int:
    rows = [["姓名", "电话", "地址"], *[[n, p, f"{i}号楼"] for i, (n, p, _o, _r) in enumerate(CALLS)]]
    with app.extensions["callbot_sessionmaker"]() as s:
        lst = save_list(s, "名单-标签", parse_contacts(make_xlsx(rows), "l.xlsx"))
        c = service.create_campaign(s, "标签一致", lst.id, "mask_reservation", lines=2)
        s.commit()
        cid = c.id
    for name, _p, outcome, result in CALLS:
        finish_call(app, cid, name, outcome, completed=result == "completed", result=result)
    return cid


def _cells(html: str, table_id: str, key: int = 1) -> dict[str, list[str]]:
    """The text of each row's cells of one table on a page, by the row's cell *key*."""
    body = html.split(f'id="{table_id}"')[1].split("</table>")[0]
    out = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                         row, re.S)]
        if len(cells) > key:
            out[cells[key]] = cells
    return out


def test_outcomes_and_results_read_the_same_on_every_face(app, login_as) -> None:  # type: ignore[no-untyped-def]
    cid = _campaign(app)
    staff = login_as("staff_a")

    # the web: each contact's result and last outcome on the campaign page
    rows = _cells(staff.get(f"/campaigns/{cid}").get_data(as_text=True), "contact-results")
    web = {name: (rows[name][4], rows[name][6]) for name, *_ in CALLS}
    # the XLSX export
    wb = openpyxl.load_workbook(io.BytesIO(staff.get(f"/results/{cid}/export.xlsx").data))
    sheet = list(wb["明细"].iter_rows(values_only=True))
    head = sheet[0]
    xlsx = {r[head.index("姓名")]: (r[head.index("结果")], r[head.index("最后一次")])
            for r in sheet[1:]}
    expected = {name: (labels.result(res), labels.outcome(out)) for name, _p, out, res in CALLS}
    assert web == xlsx == expected

    # the CLI report counts outcomes and results in the same words
    text = subprocess.run(callbot_cmd("report", str(cid)), capture_output=True, text=True,
                          env=env_for_subprocess(), check=True).stdout
    outcome_line = next(line for line in text.splitlines() if "呼叫结果" in line)
    result_line = next(line for line in text.splitlines() if "最终结果" in line)
    for code, n in (("busy", 1), ("invalid_number", 1), ("answered", 2), ("unreachable", 1),
                    ("no_answer", 1)):
        assert f"{labels.outcome(code)} {n}" in outcome_line, (code, outcome_line)
    for code, n in (("unreachable", 2), ("invalid_number", 1), ("completed", 1), ("dnc", 1),
                    ("callback", 1)):
        assert f"{labels.result(code)} {n}" in result_line, (code, result_line)
    # and the web's report page counts outcomes the same way
    report = _cells(login_as("super").get(f"/reports/{cid}").get_data(as_text=True), "outcomes", key=0)
    assert {k: v[1] for k, v in report.items()} == {
        labels.outcome(k): str(n) for k, n in (("busy", 1), ("invalid_number", 1), ("answered", 2),
                                               ("unreachable", 1), ("no_answer", 1))}

    # the words the issue asked to settle, and the two meanings of unreachable kept apart
    assert (web["张三"], web["李四"][0], web["王五"][0], web["钱七"][0]) == (
        ("联系不上", "占线"), "空号", "已完成", "勿扰")
    assert web["赵六"] == ("联系不上", "无法接通")


def test_a_campaign_and_what_staff_do_to_it_read_the_same_in_the_cli_and_the_web(  # type: ignore[no-untyped-def]
        app, login_as) -> None:
    """A campaign is a 外呼活动 on every face (the web said 任务), and starting or pausing one
    reads 已开始 / 已暂停 with its state in Chinese, in the CLI as on the web (the CLI said
    已启动 and printed the state and results as codes: running, unreachable)."""
    from tests.web.conftest import post

    cid = _campaign(app)
    staff = login_as("staff_a")
    pages = ["/", "/campaigns/", "/campaigns/new", f"/campaigns/{cid}", f"/results/{cid}"]
    for url in pages:
        html = staff.get(url).get_data(as_text=True)
        assert "任务" not in html, (url, html[html.find("任务") - 80:html.find("任务") + 40])
    assert labels.CAMPAIGN in staff.get("/campaigns/").get_data(as_text=True)

    def cli(*args: str) -> str:
        return subprocess.run(callbot_cmd("campaign", *args), capture_output=True, text=True,
                              env=env_for_subprocess(), check=True).stdout

    start = cli("start", str(cid))
    assert f"已{labels.campaign_action('start')}（状态 {labels.campaign_state('running')}）" in start
    status = cli("status", str(cid))
    assert f"[{labels.campaign_state('running')}]" in status, status
    assert f"{labels.result('unreachable')} 2" in status and "unreachable" not in status, status
    assert f"[{labels.campaign_state('running')}]" in cli("list")
    r = post(staff, f"/campaigns/{cid}/pause", page=f"/campaigns/{cid}", follow_redirects=True)
    assert f"活动“标签一致”已{labels.campaign_action('pause')}。" in r.get_data(as_text=True)
    assert f"已{labels.campaign_action('resume')}（状态 {labels.campaign_state('running')}）" in cli(
        "resume", str(cid))
