"""The new-campaign form refuses a template that uses a column the list lacks, naming file and
line, and stores nothing."""

from __future__ import annotations

from pathlib import Path

from callbot.campaign.lists import save_list
from callbot.contacts import parse_contacts
from tests.campaign.conftest import GOOD, WITHOUT_COLUMN, campaign_count


def test_web_form_shows_file_and_line(app, login_as) -> None:  # type: ignore[no-untyped-def]
    from tests.web.conftest import csrf_token

    path = Path(app.config["SCRIPTS_DIR"]) / "tingshui.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(GOOD, encoding="utf-8")
    factory = app.extensions["callbot_sessionmaker"]
    with factory() as s:
        lst = save_list(s, "无停水时间", parse_contacts(WITHOUT_COLUMN.encode(), "b.csv"))
        s.commit()
        list_id = lst.id
    c = login_as("staff_a")
    form = {"csrf_token": csrf_token(c, "/campaigns/new"), "name": "停水", "list_id": list_id,
            "script": "tingshui", "lines": 2, "windows": "09:00-11:30,14:00-20:00",
            "max_attempts": 3, "retry_minutes": 30, "daily_cap": 3}
    r = c.post("/campaigns/new", data=form)
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "话术模板无效" in html, html[:2000]
    assert "tingshui.yaml:3:" in html and "tingshui.yaml:9:" in html and "停水时间" in html
    assert campaign_count(factory) == 0
    r = c.post("/campaigns/new", data={**form, "script": "mask_reservation"})
    assert r.status_code == 302 and campaign_count(factory) == 1
