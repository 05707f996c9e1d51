"""Prompts: espeak-ng renders audible 8 kHz Chinese (the KWS model hears the words), edge-tts failing
falls back with one warning and leaves no 0-byte file, the cache returns the same file without
synthesis, staff recordings (WAV/MP3, any rate) become 8 kHz mono 16-bit."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from callbot.config import load_settings
from callbot.exceptions import SpeechError
from callbot.speech import audio
from callbot.speech.tts import EspeakTts, make_tts, normalise_recording
from tests.conftest import free_port
from tests.speech.conftest import final_of, run_stream

pytestmark = [pytest.mark.speech]


@pytest.fixture
def unreachable_edge(monkeypatch):
    """edge-tts pointed at a closed local port: its real failure path on any machine."""
    import edge_tts.communicate

    port = free_port(__import__("socket").SOCK_STREAM)
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", f"wss://127.0.0.1:{port}/edge/v1?x=1")


def test_espeak_prompt_is_audible_8k(data_dir) -> None:
    renderer = make_tts(load_settings(), engine="espeak")
    path = renderer.render("您好，这里是社区居委会，请问您需要口罩吗？")
    info = audio.check_prompt(path)
    assert (info.rate, info.channels, info.sample_width) == (8000, 1, 2)
    assert 1.5 < info.duration_s < 15 and info.rms_dbfs > -30
    assert path.is_relative_to(data_dir / "cache" / "tts")


def test_same_prompt_rendered_by_two_threads_at_once(data_dir) -> None:
    """Line workers render in threads: two renders of one text at the same moment both succeed
    and leave one complete cached file (they used to share a temporary file name)."""
    from concurrent.futures import ThreadPoolExecutor

    renderer = make_tts(load_settings(), engine="espeak")
    text = "请问您家需要预约口罩吗？需要请说需要，不需要请说不需要。"
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: renderer.render(text), range(4)))
    assert len(set(paths)) == 1
    audio.check_prompt(paths[0])
    assert not list(paths[0].parent.glob(".*.wav"))


def test_espeak_reads_pinyin_with_tones() -> None:
    assert EspeakTts.to_pinyin("需要两个") == "xu1 yao4 liang3 ge4"
    assert EspeakTts.to_pinyin("hello") == "hello"


@pytest.mark.parametrize("word", ["需要", "不需要", "两个"])
def test_espeak_words_are_understood_by_the_recogniser(data_dir, kws_engine, word) -> None:
    path = make_tts(load_settings(), engine="espeak").render(word)
    final = final_of(run_stream(kws_engine.stream(["需要", "不需要", "两个", "三个"]),
                                audio.read_8k(path)))
    assert final.match == word


def test_edge_failure_falls_back_warns_once_and_leaves_no_empty_file(
        data_dir, unreachable_edge, caplog) -> None:
    caplog.set_level(logging.WARNING)
    renderer = make_tts(load_settings(), engine="edge")
    assert [e.name for e in renderer.engines] == ["edge", "espeak"]
    first = renderer.render("请问您需要口罩吗")
    second = renderer.render("谢谢，再见")
    assert "espeak" in first.parts and "espeak" in second.parts
    for p in (first, second):
        audio.check_prompt(p)
    warnings = [r for r in caplog.records if "falling back" in r.getMessage()]
    assert len(warnings) == 1 and "edge" in warnings[0].getMessage()
    files = [p for p in (data_dir / "cache").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_size > 1000 for p in files)
    assert not list((data_dir / "cache").rglob("*.mp3"))


def test_cache_hit_returns_same_file_without_synthesis(data_dir) -> None:
    renderer = make_tts(load_settings(), engine="espeak")
    engine = renderer.engines[0]
    calls = []
    real = engine.synthesize

    def counting(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    engine.synthesize = counting  # type: ignore[method-assign]
    first = renderer.render("请按1确认")
    mtime = first.stat().st_mtime_ns
    assert renderer.render("请按1确认") == first
    assert renderer.prerender(["请按1确认", "再见"]) == {"请按1确认": first,
                                                     "再见": renderer.render("再见")}
    assert len(calls) == 2 and first.stat().st_mtime_ns == mtime
    # another renderer (another worker process) finds the same cached prompt
    assert make_tts(load_settings(), engine="espeak").render("请按1确认") == first
    # a different rate is a different prompt
    assert renderer.render("请按1确认", rate="-20%") != first


def test_bad_rate_and_empty_text_are_refused(data_dir) -> None:
    renderer = make_tts(load_settings(), engine="espeak")
    with pytest.raises(ValueError, match="rate"):
        renderer.render("你好", rate="fast")
    with pytest.raises(SpeechError):
        renderer.render("   ")


def _sox(*args: str) -> None:
    subprocess.run(["sox", *args], check=True, capture_output=True)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_staff_recording_is_normalised(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / f"staff.{fmt}"
    # 44.1 kHz stereo, 2 s, speech-band tones at a low level
    _sox("-n", "-r", "44100", "-c", "2", str(src), "synth", "2", "sine", "300-900", "vol", "0.05")
    dst = normalise_recording(src, tmp_path / "out" / "prompt.wav")
    info = audio.check_prompt(dst)
    assert (info.rate, info.channels, info.sample_width) == (8000, 1, 2)
    assert abs(info.duration_s - 2.0) < 0.1
    assert info.rms_dbfs > -12  # brought up to a telephone level


def test_silent_or_broken_recording_is_refused(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    _sox("-n", "-r", "16000", "-c", "1", str(silent), "trim", "0", "2")
    with pytest.raises(SpeechError, match="无声|silent"):
        normalise_recording(silent, tmp_path / "a.wav")
    # a muted microphone's hiss: normalising would make it loud, so the level is checked first
    hiss = tmp_path / "hiss.wav"
    _sox("-n", "-r", "44100", "-c", "1", str(hiss), "synth", "2", "whitenoise", "vol", "0.001")
    with pytest.raises(SpeechError, match="无声|silent"):
        normalise_recording(hiss, tmp_path / "h.wav")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"not audio at all" * 100)
    with pytest.raises(SpeechError):
        normalise_recording(junk, tmp_path / "b.wav")
    assert not any(p.name in ("a.wav", "b.wav", "h.wav") for p in tmp_path.iterdir())
    assert not list(tmp_path.glob(".*.wav"))  # no temporary file left behind


def test_voice_and_rate_from_the_environment(data_dir, monkeypatch) -> None:
    monkeypatch.setenv("CALLBOT_TTS_RATE", "-20%")
    monkeypatch.setenv("CALLBOT_TTS_VOICE", "cmn")
    slow = make_tts(load_settings(), engine="espeak")
    assert (slow.voice, slow.rate) == ("cmn", "-20%")
    monkeypatch.delenv("CALLBOT_TTS_RATE")
    monkeypatch.delenv("CALLBOT_TTS_VOICE")
    normal = make_tts(load_settings(), engine="espeak")
    text = "请问您需要口罩吗"
    assert audio.info(slow.render(text)).duration_s > audio.info(normal.render(text)).duration_s * 1.1


@pytest.fixture
def edge_service(tmp_path, monkeypatch):
    """The local stand-in for the edge-tts service (tests/edge_service.py): the SSML it was sent."""
    from tests.edge_service import edge_stand_in

    with edge_stand_in(tmp_path, monkeypatch) as received:
        yield received


def test_edge_success_path_decodes_mp3_to_8k(data_dir, edge_service, caplog) -> None:
    caplog.set_level(logging.WARNING)
    renderer = make_tts(load_settings(), engine="edge")
    path = renderer.render("请问您需要口罩吗", rate="-20%")
    assert path.parts[-3] == "edge" and not caplog.records  # no fallback
    info = audio.check_prompt(path)
    assert (info.rate, info.channels, info.sample_width) == (8000, 1, 2)
    assert abs(info.duration_s - 1.5) < 0.15
    ssml = next(m for m in edge_service if "<speak" in m)
    assert "zh-CN, XiaoxiaoNeural" in ssml and "请问您需要口罩吗" in ssml and "rate='-20%'" in ssml
    assert renderer.render("请问您需要口罩吗", rate="-20%") == path
    assert sum("<speak" in m for m in edge_service) == 1  # the second render was a cache hit


def test_a_prompt_rendered_in_a_child_process_is_the_prompt_rendered_here(data_dir) -> None:
    """``callbot worker``'s line processes render a missing prompt in a child
    (``python -m callbot.speech.render_child``): the same cached WAV as in-process rendering,
    and a child that cannot render says why, as a SpeechError, leaving no file behind."""
    from callbot.speech.render_child import ChildRenderer

    here = make_tts(load_settings(), engine="espeak")
    child = ChildRenderer.like(here)
    text = "王大爷您好，这里是幸福里居委会。"
    path = child.render(text)
    assert path.is_relative_to(data_dir / "cache" / "tts")
    rendered = path.read_bytes()
    path.unlink()
    assert here.render(text).read_bytes() == rendered  # the child's file, byte for byte

    with pytest.raises(SpeechError, match="提示音无声"):  # punctuation only: espeak says nothing
        child.render("，。")
    assert not [p for p in (data_dir / "cache" / "tts").rglob("*") if p.is_file()
                and p.read_bytes() != rendered]  # no silent or partial file cached
