"""``tts_personal: offline`` keeps residents' personal data on the box. The installation's TTS
engine is edge-tts (Microsoft's online service), played here by a local stand-in that records
every text it is sent (tests/edge_service.py). With ``offline`` the prompts the dispatcher
renders ahead and the ones a line worker plays are made with the contact's name, address and
phone digits synthesised by espeak-ng on this box: none of them ever reaches the service, while
the rest of each prompt still does (the good voice); the parts are joined into one prompt. With
``online`` (the default, as before) the name is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.campaign.conftest import make_env, numbers, setup_campaign
from tests.edge_service import edge_stand_in

pytestmark = [pytest.mark.speech]

SCRIPT = """\
name: personal
title: 个人信息测试
requires: [姓名, 地址]
fields:
  need: bool
start: ask
steps:
  ask:
    ask: "{{ 姓名 }}您好，这里是居委会。您家住{{ 地址 }}，要口罩吗？"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {need: true}, next: bye}
      no: {set: {need: false}, next: bye}
  bye:
    say: "好的，{{ 姓名 }}，再见。"
    end: completed
"""


def _said(received: list[str]) -> str:
    """The prompt texts the service was asked to speak (inside each SSML's prosody)."""
    import re

    return "\n".join(t for m in received for t in re.findall(r"<prosody[^>]*>(.*?)</prosody>", m,
                                                            re.S))


def _campaign(tmp_path: Path, tts_personal: str) -> tuple[Any, Any, list[dict[str, Any]]]:
    from callbot.campaign.jobs import contact_variables
    from callbot.campaign.models import Campaign, Contact
    from callbot.db import session_scope

    script = tmp_path / "personal.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    env = make_env(tmp_path / "var", None, None, CALLBOT_TTS_ENGINE="edge",
                   CALLBOT_PRERENDER="1")
    factory = env.factory()
    cid = setup_campaign(factory, numbers(2), lines=2, script=str(script))
    with session_scope(factory) as s:
        c = s.get(Campaign, cid)
        assert c is not None and c.tts_personal == "online"  # the default, as before
        c.tts_personal = tts_personal
        people = [contact_variables(x) for x in s.scalars(select(Contact))]
    return env, factory, people


def _line_prompts(env: Any, tts_personal: str, variables: dict[str, Any], workdir: Path) -> Any:
    """What a line worker plays: SessionRunner.tts_for(job) for a job of this campaign, the
    prompts run_call renders with it before dialling."""
    from callbot.campaign.jobs import CallJob
    from callbot.campaign.runner import SessionRunner, _LockedTts
    from callbot.dialogue import DialogueEngine
    from callbot.prompts import Prompts
    from callbot.script import load_script
    from callbot.speech.tts import make_tts

    runner = object.__new__(SessionRunner)  # the phone is not needed to render prompts
    runner.tts, runner._offline = _LockedTts(make_tts(env.settings)), None
    job = CallJob(attempt_id=1, campaign_id=1, contact_id=1, script="personal", dial="1",
                  phone="1", variables=variables, number=1, tts_personal=tts_personal)
    script = load_script(workdir.parent / "personal.yaml")
    engine = DialogueEngine(script, variables)
    workdir.mkdir(parents=True, exist_ok=True)
    return Prompts(runner.tts_for(job), engine.prompts(), workdir, voice=script.voice,
                   rate=script.rate), engine


def test_offline_no_resident_name_reaches_the_online_engine(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from callbot.campaign.dispatcher import Dispatcher
    from callbot.speech import audio

    with edge_stand_in(tmp_path, monkeypatch, seconds=1.0) as received:
        env, factory, people = _campaign(tmp_path, "offline")
        d = Dispatcher(factory, env.redis(), queue_name="personal-q", settings=env.settings)
        assert d.tick().enqueued == 2
        assert d.prerenderer().rendered >= 2
        prompts, engine = _line_prompts(env, "offline", people[0], tmp_path / "line")
        said = _said(received)
    assert "这里是居委会" in said and "要口罩吗" in said  # the rest went to the online voice
    for p in people:
        for secret in (p["姓名"], p["地址"], p["phone"][-4:]):
            assert secret not in said, (secret, said)
    # one prompt: the name and the address (espeak, on this box) joined with the online parts
    greeting = engine.prompts()[0]
    assert people[0]["姓名"] in greeting
    info = audio.check_prompt(prompts.files[greeting])
    assert info.duration_s > 2 * 1.0 + 0.3, info  # two online parts + the local ones
    local = list((tmp_path / "var").rglob("espeak/**/*.wav"))
    assert local, "the personal parts were synthesised by espeak-ng"


def test_online_sends_the_name(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from callbot.campaign.dispatcher import Dispatcher

    with edge_stand_in(tmp_path, monkeypatch, seconds=1.0) as received:
        env, factory, people = _campaign(tmp_path, "online")
        d = Dispatcher(factory, env.redis(), queue_name="personal-q", settings=env.settings)
        assert d.tick().enqueued == 2
        _line_prompts(env, "online", people[0], tmp_path / "line")
        said = _said(received)
    assert all(p["姓名"] in said for p in people), said
    assert people[0]["地址"] in said


def test_a_bad_setting_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from callbot.campaign import service
    from callbot.db import session_scope
    from callbot.exceptions import CampaignError

    env = make_env(tmp_path / "var", None, None)
    factory = env.factory()
    setup_campaign(factory, numbers(1), name="a", start=False)
    with session_scope(factory) as s, pytest.raises(CampaignError, match="online 或 offline"):
        service.create_campaign(s, "b", "list-a", "mask_reservation", tts_personal="local")


def test_split_keeps_surnames_with_a_title_and_phone_digits() -> None:
    from callbot.speech.tts import personal_values, split_personal

    values = personal_values({"姓名": "王秀英", "phone": "+8613800001234", "地址": "3号楼",
                              "note": None})
    parts = split_personal("王阿姨您好，尾号1234的机主王秀英，您住3号楼吗？", values)
    assert [p for p, mine in parts if mine] == ["王阿姨", "1234", "王秀英", "3号楼"]
    assert "".join(p for p, _ in parts) == "王阿姨您好，尾号1234的机主王秀英，您住3号楼吗？"
