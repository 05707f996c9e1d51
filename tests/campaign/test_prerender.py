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


class _CountingEspeak:
    """espeak-ng itself, counting the texts it synthesises."""

    name = "espeak"
    default_voice = defaults.TTS_VOICE_ESPEAK

    def __init__(self) -> None:
        from callbot.speech.tts import EspeakTts

        self.real = EspeakTts()
        self.texts: list[tuple[str, int]] = []

    def synthesize(self, text: str, dst: Path, **kw: object) -> None:
        self.texts.append((text, kw["rate"]))  # type: ignore[arg-type]
        self.real.synthesize(text, dst, **kw)  # type: ignore[arg-type]

    def derive(self, *a: object, **kw: object) -> None:
        self.real.derive(*a, **kw)  # type: ignore[arg-type]


def test_the_slowed_copy_is_stretched_from_the_prompt_not_synthesised_again(
        tmp_path: Path) -> None:
    """Each contact's greeting and its slowed copy (asked again after 你说什么) were two
    espeak-ng runs; the slowed copy is the greeting stretched by sox (one espeak run a text),
    as long as espeak at the slower rate would say it, and a line finds it in the cache."""
    import wave

    from callbot.dialogue import DialogueEngine
    from callbot.prompts import _SLOW_KEY, Prompts, render_prompts, slower
    from callbot.script import load_script
    from callbot.speech.audio import check_prompt
    from callbot.speech.tts import PromptRenderer

    engine = _CountingEspeak()
    tts = PromptRenderer([engine], tmp_path / "cache")
    script = load_script(QUICK)
    render_prompts(tts, script, {"name": "王芳"}, committee="幸福社区")
    texts = [t for t, _ in engine.texts]
    assert texts and len(texts) == len(set(texts)), engine.texts  # one run a text
    rate = script.rate or defaults.TTS_RATE
    slow = DialogueEngine(script, {"name": "王芳"}, committee="幸福社区").slow_prompts()
    assert slow
    for text in slow:
        normal = tts.render(text, rate=rate)
        slowed = tts.render(text, rate=slower(rate))  # the cache name a line looks up
        check_prompt(slowed)
        with wave.open(str(normal)) as a, wave.open(str(slowed)) as b:
            ratio = b.getnframes() / a.getnframes()
        assert 1.15 < ratio < 1.4, ratio  # -20 points: ~1.25 times as long
    n = len(engine.texts)
    line = Prompts(tts, [], tmp_path / "call", rate=rate, slow=slow)
    assert all(line.files[_SLOW_KEY + t].is_file() for t in slow)
    assert len(engine.texts) == n  # nothing rendered on the line
