"""``callbot demo`` (issue 11 item 8): its population includes what a line says instead of a
resident — carrier announcements in 183 early media (空号, 关机, 占线, 无法接通) and after a 200
(停机), and a voice assistant (语音助手) — and its report and export show them under their
Chinese labels, none counted as answered. And the demo never dials a real external duty phone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import callbot_cmd, env_for_subprocess

pytestmark = pytest.mark.sip

LABELS = {"invalid_number": "空号", "powered_off": "关机", "suspended": "停机",
          "busy": "占线", "assistant": "语音助手", "unreachable": "无法接通"}


def test_demo_personas_are_heard_as_announcements_and_not_answered(tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    pytest.importorskip("sherpa_onnx")
    # the mask mix's first seven: one voice answer, then the six things a line says instead
    people = tmp_path / "居民.csv"
    people.write_text("姓名,电话,地址\n" + "".join(
        f"居民{i},1380000{i:04d},1号楼{100 + i}\n" for i in range(1, 8)), encoding="utf-8")
    # the one resident's mask dialogue (3 questions) is the longest path: its prompts spoken at
    # +100 % instead of the demo's +40 % (the simulator hears a prompt by its energy, not its
    # words) take it from ~35 to ~25 s; the retries of 占线/无法接通 (3 attempts, 1 s apart)
    # run beside it on the other lines
    r = subprocess.run(
        callbot_cmd("demo", "--list", str(people), "--lines", "8", "--no-web",
                    "--retry-delay", "1", "--timeout", "150"),
        env=env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var"),
                               CALLBOT_CALL_TTS_RATE="+100%"),
        capture_output=True, text=True, timeout=200)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    line = re.search(r"呼叫结果：(.*)", out).group(1)  # type: ignore[union-attr]
    outcomes = dict(item.rsplit(" ", 1) for item in line.split("，"))
    heard = {k for k, zh in LABELS.items() if zh in outcomes}
    # each of the six is heard by what it says (one slip allowed: it keeps its SIP outcome)
    assert len(heard) >= 5, out
    # only the one resident who spoke is answered: no announcement or assistant counts
    assert re.search(r"接通 1 次", out), out
    assert outcomes.get("已接通") == "1", out
    export = Path(re.search(r"导出：(\S+)", out).group(1))  # type: ignore[union-attr]
    import openpyxl

    ws = openpyxl.load_workbook(export, read_only=True)["明细"]
    rows = [list(row) for row in ws.iter_rows(values_only=True)]
    head = rows[0]
    last, said = head.index("最后一次"), head.index("线路提示音")
    by_name = {row[1]: row for row in rows[1:]}
    assert by_name["居民1"][last] == "已接通" and not by_name["居民1"][said]
    shown = {row[last] for row in rows[1:] if row[said]}
    assert len(shown & set(LABELS.values())) >= 5, rows
    assert "已接通" not in shown
    # the contact's call page shows the announcement beside the outcome it decided
    from callbot.accounts import create_user
    from callbot.campaign.models import Attempt, Contact
    from callbot.config import load_settings
    from tests.web.conftest import login
    from web import create_app

    app = create_app(load_settings({"CALLBOT_DATA_DIR": str(tmp_path / "var")}), TESTING=True)
    with app.extensions["callbot_sessionmaker"]() as s:
        create_user(s, "super", "correct-horse-1", "supervisor")
        s.commit()
        a = s.query(Attempt).filter(Attempt.announcement.is_not(None)).first()
        assert a is not None and a.outcome in LABELS, "no announcement stored on an attempt"
        page = f"/campaigns/{a.campaign_id}/contacts/{a.contact_id}"
        want = f"线路提示音（{LABELS[a.outcome]}）：“{a.announcement}”"
        assert s.get(Contact, a.contact_id) is not None
    client = app.test_client()
    assert login(client, "super", "correct-horse-1").status_code == 302
    html = client.get(page).get_data(as_text=True)
    assert want in html, html[-3000:]


def test_demo_never_dials_an_external_duty_uri() -> None:
    from callbot.cli.demo import local_duty
    from callbot.config import SipConfig
    from callbot.exceptions import DialError
    from callbot.telephony.dialplan import to_sip_uri

    assert local_duty("88880000") and local_duty("sip:100@127.0.0.1:5070")
    assert not local_duty("sip:duty@pbx.example.com") and not local_duty("sips:1@10.0.0.5")
    conf = SipConfig(dial_uri="sip:{number}@127.0.0.1:5070",
                     dial_uri_hosts=("127.0.0.1", "localhost"))
    assert to_sip_uri("88880000", conf) == "sip:88880000@127.0.0.1:5070"
    assert to_sip_uri("sip:9@127.0.0.1:6000", conf) == "sip:9@127.0.0.1:6000"
    with pytest.raises(DialError, match="uri_hosts"):
        to_sip_uri("sip:duty@pbx.example.com", conf)
