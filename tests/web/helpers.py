"""Build data for page tests: a stored list and campaign, and finished calls written the way
line workers write them (a fast stand-in; the browser test runs real calls)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from callbot.campaign import service
from callbot.campaign.lists import save_list
from callbot.campaign.models import Answer, Attempt, Target, utcnow
from callbot.contacts import parse_contacts
from tests.web.conftest import GOOD_ROWS, csrf_token, make_xlsx

PUBLIC_ENDPOINTS = frozenset({"static", "auth.login"})


def make_campaign(app: Any, script: str = "mask_reservation", name: str = "口罩登记一") -> int:
    with app.extensions["callbot_sessionmaker"]() as s:
        lst = save_list(s, f"名单-{name}", parse_contacts(make_xlsx(GOOD_ROWS), "l.xlsx"))
        c = service.create_campaign(s, name, lst.id, script, lines=2)
        s.commit()
        return c.id


def finish_call(app: Any, campaign_id: int, contact_name: str, outcome: str,
                answers: dict[str, Any] | None = None, completed: bool = False,
                result: str | None = None, transcript: list | None = None) -> None:
    """Record one dialled attempt and, when *result* is given, close the contact."""
    from sqlalchemy import select

    from callbot.campaign.models import Contact

    with app.extensions["callbot_sessionmaker"]() as s:
        t, ct = s.execute(select(Target, Contact).join(Contact, Contact.id == Target.contact_id)
                          .where(Target.campaign_id == campaign_id,
                                 Contact.name == contact_name)).one()
        t.attempts += 1
        now = utcnow()
        a = Attempt(campaign_id=campaign_id, target_id=t.id, contact_id=ct.id, phone=ct.phone,
                    number=t.attempts, state="finished", outcome=outcome, completed=completed,
                    started_at=now - timedelta(seconds=40),
                    answered_at=now - timedelta(seconds=30) if outcome == "answered" else None,
                    ended_at=now, talk_seconds=30.0 if outcome == "answered" else None,
                    transcript=transcript)
        s.add(a)
        s.flush()
        for k, v in (answers or {}).items():
            s.add(Answer(attempt_id=a.id, campaign_id=campaign_id, contact_id=ct.id, field=k,
                         value=v))
        t.last_outcome = outcome
        if result:
            t.state, t.result = "done", result
        s.commit()


def upload(client: Any, data: bytes, filename: str, name: str = "") -> Any:
    """POST a contact list file to /lists/upload as the logged-in client."""
    import io

    token = csrf_token(client, "/lists/")
    return client.post("/lists/upload", data={"csrf_token": token, "name": name,
                                              "file": (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def route_urls(app: Any, cid: int, public: frozenset[str] = PUBLIC_ENDPOINTS) -> Iterator[tuple[str, str, str]]:
    """Every (endpoint, method, url) of the app but the public ones, with ids filled in."""
    args = {"campaign_id": cid, "list_id": 1, "contact_id": 1, "token": "t" * 32,
            "slug": "mask_reservation", "action": "pause", "fmt": "xlsx", "index": 0,
            "user_id": 1, "rec_id": 1, "alert_id": 1}
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if rule.endpoint in public:
                continue
            values: dict[str, Any] = {a: args[a] for a in rule.arguments}
            url = url_for(rule.endpoint, **values)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule.endpoint, method, url
