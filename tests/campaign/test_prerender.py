"""Prompts are rendered ahead of the line: the dispatcher renders each call's prompts (the
contact's own greeting among them) before it enqueues the call, into the shared prompt cache,
and a worker on another host (its own empty disk cache) finds every prompt there without
rendering anything; prompts many processes want at once are rendered once per host."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from callbot import defaults
from tests.campaign.conftest import make_env, numbers, setup_campaign

pytestmark = [pytest.mark.speech]
QUICK = Path(__file__).parent / "quick_mask.yaml"


class _MustNotRender:
    """A TTS engine of the other host that fails the test if it is asked to synthesise."""

    name = "espeak"
    default_voice = defaults.TTS_VOICE_ESPEAK
    calls = 0

    def synthesize(self, text: str, dst: Path, **kw: object) -> None:
        _MustNotRender.calls += 1
        raise AssertionError(f"rendered on the line: {text}")


def test_dispatcher_renders_ahead_for_every_host(tmp_path: Path) -> None:
    from callbot.campaign.dispatcher import Dispatcher
    from callbot.campaign.jobs import contact_variables
    from callbot.campaign.models import Attempt, Contact
    from callbot.db import session_scope
    from callbot.prompts import render_prompts
    from callbot.script import load_script
    from callbot.speech.tts import PromptRenderer

    env = make_env(tmp_path / "dispatcher-host", None, None, CALLBOT_TTS_ENGINE="espeak",
                   CALLBOT_PRERENDER="1")
    factory = env.factory()
    setup_campaign(factory, numbers(2), lines=2, script=str(QUICK))
    redis = env.redis()
    d = Dispatcher(factory, redis, queue_name="prerender-q", settings=env.settings)
    assert d.tick().enqueued == 2
    assert d.prerenderer().rendered >= 6  # own question, shared ones, slower repeats

    other = PromptRenderer([_MustNotRender()], tmp_path / "line-host" / "cache" / "tts",
                           shared=redis)
    with session_scope(factory) as s:
        contacts = [s.get(Contact, a.contact_id) for a in s.query(Attempt).all()]
        variables = [contact_variables(c) for c in contacts if c is not None]
    script = load_script(QUICK)
    for v in variables:
        assert render_prompts(other, script, v, committee=env.settings.committee) >= 6
    assert _MustNotRender.calls == 0
    cached = list((tmp_path / "line-host" / "cache" / "tts").rglob("*.wav"))
    assert len(cached) >= 8  # two contacts' own questions (and slow ones) + the shared prompts


def test_one_render_per_prompt_however_many_processes_ask(tmp_path: Path) -> None:
    """Eight renderers (as eight line processes of one host) asking for the same new prompt at
    once: espeak runs once, all get the same file."""
    from callbot.config import load_settings
    from callbot.speech.tts import make_tts

    settings = load_settings({"CALLBOT_DATA_DIR": str(tmp_path / "var"),
                              "CALLBOT_TTS_ENGINE": "espeak"})
    renderers = [make_tts(settings) for _ in range(8)]
    runs = []
    for r in renderers:
        inner = r.engines[0]
        orig = inner.synthesize

        def counted(*a, _orig=orig, **kw):  # type: ignore[no-untyped-def]
            runs.append(1)
            return _orig(*a, **kw)

        inner.synthesize = counted  # type: ignore[method-assign]
    got: list[Path] = []
    barrier = threading.Barrier(len(renderers))

    def one(r) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        got.append(r.render("请问您家需要预约口罩吗？"))

    threads = [threading.Thread(target=one, args=(r,)) for r in renderers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 8 and len(set(got)) == 1 and got[0].is_file()
    assert len(runs) == 1


class _Down:
    """The preferred engine, failing (edge-tts without its service)."""

    name = "edge"
    default_voice = defaults.TTS_VOICE_EDGE

    def synthesize(self, text: str, dst: Path, **kw: object) -> None:
        from callbot.exceptions import SpeechError

        raise SpeechError("service unreachable")


class _CountingRedis:
    def __init__(self, redis: object):
        self.redis = redis
        self.gets: list[str] = []

    def get(self, key: str) -> object:
        self.gets.append(key)
        return self.redis.get(key)  # type: ignore[attr-defined]

    def set(self, *a: object, **kw: object) -> object:
        return self.redis.set(*a, **kw)  # type: ignore[attr-defined]


def test_a_prompt_missing_from_the_shared_cache_is_not_asked_for_every_contact(
        tmp_path: Path) -> None:
    """With the preferred engine down, every prompt of every contact asked the shared cache for
    the preferred engine's copy first (the dispatcher: ~40 Redis GETs a contact, all misses).
    A miss is remembered for SHARED_MISS_S: the second contact asks only for its own prompts."""
    from callbot.prompts import render_prompts
    from callbot.script import load_script
    from callbot.speech.tts import EspeakTts, PromptRenderer

    env = make_env(tmp_path / "var", None, None)
    shared = _CountingRedis(env.redis())
    tts = PromptRenderer([_Down(), EspeakTts()], tmp_path / "cache", shared=shared)
    script = load_script(QUICK)
    first = render_prompts(tts, script, {"name": "王芳"}, committee="幸福社区")
    asked_first = len(shared.gets)
    assert first >= 4 and asked_first >= first  # each prompt: the edge copy, then espeak's
    shared.gets.clear()
    render_prompts(tts, script, {"name": "李娜"}, committee="幸福社区")
    own = [k for k in shared.gets if k.startswith("callbot:tts:edge/")]
    assert 1 <= len(own) <= 4, shared.gets  # her greeting (and its slow copy): not every prompt
