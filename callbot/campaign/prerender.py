"""Prompts rendered ahead of the line: the dispatcher renders each attempt's prompts (the
contact's greeting, and once per campaign the prompts every contact shares) just before it
enqueues the call, into the shared prompt cache (Redis) that every worker host reads, so a line
claims a call and dials at once.

Before, each line rendered its call's prompts after claiming it: at a 100-call start, 100
processes rendered the same shared prompts at the same time and claim → INVITE reached p95
19–26 s on a 2-core box.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callbot.config import Settings
from callbot.db import session_scope

log = logging.getLogger(__name__)


class Prerenderer:
    """Renders the prompts of queued attempts; a failure is logged, never fatal (the line then
    renders what is missing, as before)."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings, redis: Any):
        self.factory = factory
        self.settings = settings
        self.redis = redis
        self._tts: Any = None
        self._scripts: dict[str, Any] = {}
        self.rendered = 0
        self.seconds = 0.0

    @property
    def tts(self) -> Any:
        if self._tts is None:
            from callbot.speech.tts import make_tts

            self._tts = make_tts(self.settings, shared=self.redis)
        return self._tts

    def _script(self, name: str) -> Any:
        from callbot.script import load_script

        if name not in self._scripts:
            self._scripts[name] = load_script(name)
        return self._scripts[name]

    def attempt(self, attempt_id: int) -> None:
        """Render every prompt a call of this attempt may play."""
        for _, job in self.prepare([attempt_id]):
            self.render(job)

    def prepare(self, attempt_ids: list[int]) -> list[tuple[int, Any]]:
        """What rendering each attempt needs, read in one transaction for a tick's attempts
        (attempts with their contacts in one query; each campaign and its committee once):
        ``(attempt id, job)`` in the order given; a job is None when it cannot be read (the
        line renders what is missing)."""
        from sqlalchemy import select

        from callbot.campaign.jobs import _committee_of, contact_variables
        from callbot.campaign.models import Attempt, Campaign, Contact

        t0 = time.perf_counter()
        jobs: dict[int, Any] = {}
        try:
            with session_scope(self.factory) as s:
                rows = [r for i in range(0, len(attempt_ids), 500) for r in s.execute(
                    select(Attempt.id, Attempt.campaign_id, Contact)
                    .join(Contact, Contact.id == Attempt.contact_id)
                    .where(Attempt.id.in_(attempt_ids[i:i + 500]))).all()]
                campaigns: dict[int, Any] = {}
                for aid, cid, contact in rows:
                    if cid not in campaigns:
                        c = s.get(Campaign, cid)
                        campaigns[cid] = None if c is None else (
                            c.script,
                            (c.tts_personal or "online") == "offline",
                            _committee_of(s, c.id, self.settings.committee)["committee"]
                            or self.settings.committee)
                    if campaigns[cid] is not None:
                        jobs[aid] = (contact_variables(contact), *campaigns[cid])
        except Exception:  # noqa: BLE001 - the line renders what is missing
            log.warning("prompts of attempts %s not rendered ahead", attempt_ids, exc_info=True)
        finally:
            self.seconds += time.perf_counter() - t0
        return [(aid, jobs.get(aid)) for aid in attempt_ids]

    def render(self, job: Any) -> None:
        """Render the prompts of one prepared attempt (``prepare``); a failure is logged."""
        from callbot.prompts import render_prompts

        if job is None:
            return
        variables, script, offline, committee = job
        t0 = time.perf_counter()
        try:
            tts = self.tts
            if offline:  # the contact's own words never reach the online engine
                from callbot.speech.tts import keep_personal_offline

                tts = keep_personal_offline(tts, variables)
            self.rendered += render_prompts(
                tts, self._script(script), variables, committee=committee,
                tts_rate=self.settings.extra.get("call_tts_rate") or None)
        except Exception:  # noqa: BLE001 - the line renders what is missing
            log.warning("prompts of a queued attempt not rendered ahead", exc_info=True)
        finally:
            self.seconds += time.perf_counter() - t0
