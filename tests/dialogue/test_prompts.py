"""Staff-recorded prompts: a step's ``audio:`` recording is validated with the template, carried
on the engine's Say, normalised to 8 kHz once and played on the call instead of TTS."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from callbot.dialogue import DialogueEngine, Say
from callbot.exceptions import TemplateError
from callbot.script import load_script, parse_script
from tests.conftest import free_port

TONE_S = 2.0


def _template(audio: str) -> str:
    return (
        "name: recorded_greeting\n"
        "title: 录音问候\n"
        "steps:\n"
        "  greet:\n"
        "    say: 您好，这里是居委会的录音通知。\n"
        f"    audio: {audio}\n"
        "    end: completed\n"
    )


def _tone(path: Path) -> Path:
    """A 1 kHz tone, 44.1 kHz stereo: what a staff member's recorder might produce."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (scripts/setup installs it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", "-b", "16", str(path),
                    "synth", str(TONE_S), "sine", "1000", "vol", "0.5"], check=True)
    return path


def test_relative_audio_resolves_next_to_the_template(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "录音").mkdir()
    (tmp_path / "录音" / "问候.wav").write_bytes(b"RIFF")
    tpl = tmp_path / "t.yaml"
    tpl.write_text(_template("录音/问候.wav"), encoding="utf-8")
    monkeypatch.chdir("/")
    script = load_script(tpl)
    assert script.steps["greet"].audio == (tmp_path / "录音" / "问候.wav").resolve()
    assert script.steps["greet"].text == "您好，这里是居委会的录音通知。"


def test_missing_recording_is_an_error_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as exc:
        parse_script(_template("录音/没有.wav"), filename="t.yaml", base_dir=tmp_path)
    assert "t.yaml:6:" in str(exc.value) and "没有.wav" in str(exc.value)
    assert [e.line for e in exc.value.errors] == [6]


def test_recording_must_be_wav_or_mp3(tmp_path: Path) -> None:
    (tmp_path / "greeting.ogg").write_bytes(b"OggS")
    with pytest.raises(TemplateError) as exc:
        parse_script(_template("greeting.ogg"), filename="t.yaml", base_dir=tmp_path)
    assert "t.yaml:6:" in str(exc.value) and ".mp3" in str(exc.value)
    (tmp_path / "GREETING.MP3").write_bytes(b"ID3")
    script = parse_script(_template(str(tmp_path / "GREETING.MP3")), filename="t.yaml")
    assert script.steps["greet"].audio == tmp_path / "GREETING.MP3"


def test_recorded_step_text_is_not_sent_to_tts(tmp_path: Path) -> None:
    """Prompts rendered before dialling skip a recorded step's text (the call plays the recording);
    the same text in a step without a recording is still rendered."""
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    text = _template("a.wav").replace("    end: completed\n", "    next: bye\n") + (
        "  bye:\n"
        "    say: 再见。\n"
        "    end: completed\n")
    script = parse_script(text, filename="t.yaml", base_dir=tmp_path)
    prompts = script.all_prompts({})
    assert "您好，这里是居委会的录音通知。" not in prompts
    assert "再见。" in prompts
    plain = parse_script(text.replace("    audio: a.wav\n", ""), filename="t.yaml")
    assert "您好，这里是居委会的录音通知。" in plain.all_prompts({})


def test_engine_says_the_transcript_with_the_recording(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    script = parse_script(_template("a.wav"), filename="t.yaml", base_dir=tmp_path)
    says = [a for a in DialogueEngine(script, {}).start() if isinstance(a, Say)]
    assert says == [Say("您好，这里是居委会的录音通知。", "greet", False, str(tmp_path / "a.wav"))]
    # steps without a recording keep audio=None
    builtin = DialogueEngine(load_script("mask_reservation"), {"姓名": "张阿姨"}).start()
    assert all(a.audio is None for a in builtin if isinstance(a, Say))


def test_recording_is_normalised_once_to_8k_mono(tmp_path: Path) -> None:
    from callbot.prompts import recording_file

    src = _tone(tmp_path / "tone.wav")
    out = recording_file(src, tmp_path / "cache")
    with wave.open(str(out), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert abs(w.getnframes() / 8000 - TONE_S) < 0.05
    mtime = out.stat().st_mtime_ns
    assert recording_file(src, tmp_path / "cache") == out and out.stat().st_mtime_ns == mtime


@pytest.mark.sip
@pytest.mark.speech
def test_call_plays_the_recording_instead_of_tts(tmp_path: Path) -> None:
    pytest.importorskip("pjsua2")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup installs it)")
    import numpy as np

    from callbot.config import SipConfig, load_settings
    from callbot.residents import Simulator, read_call_log
    from callbot.session import run_call
    from callbot.speech.tts import make_tts
    from callbot.telephony import Phone
    from callbot.telephony.audio import read_wav, rms, wav_rate

    _tone(tmp_path / "tpl" / "录音" / "问候.wav")
    tpl = tmp_path / "tpl" / "greet.yaml"
    tpl.write_text(_template("录音/问候.wav"), encoding="utf-8")
    (tmp_path / "personas.yaml").write_text(
        'residents:\n  - {number: "3001", behaviour: silent, replies: []}\n', encoding="utf-8")
    sim = Simulator(str(tmp_path / "personas.yaml"), str(tmp_path / "rec"), port=free_port(),
                    procs=1)
    sim.start()
    tts = make_tts(load_settings({"CALLBOT_DATA_DIR": str(tmp_path / "var")}), engine="espeak")
    phone = Phone(SipConfig(bind="127.0.0.1", local_port=0, rtp_port=0, domain="127.0.0.1",
                            ring_timeout_s=10, response_timeout_s=3))
    phone.start()
    try:
        rep = run_call(phone, f"sip:3001@127.0.0.1:{sim.port}", tpl, {}, tts,
                       None)  # type: ignore[arg-type]  # the script asks nothing: no recogniser
        log = {r["number"]: r for r in read_call_log(sim.record_dir, wait_for=["3001"])}["3001"]
    finally:
        phone.stop()
        sim.stop()
    assert rep.outcome == "answered" and rep.ended == "completed"
    assert [t["text"] for t in rep.transcript] == ["您好，这里是居委会的录音通知。"]
    # what the resident heard: one stretch of sound as long as the recording, and it is the
    # 1 kHz tone (≈2000 zero crossings a second), not espeak's rendering of the transcript
    a = read_wav(log["recording"])
    sr, n = wav_rate(log["recording"]), wav_rate(log["recording"]) // 50
    loud = [i for i in range(len(a) // n) if rms(a[i * n:(i + 1) * n]) > 300]
    assert loud, "the resident heard nothing"
    start, end = loud[0] * n, (loud[-1] + 1) * n
    assert abs((end - start) / sr - TONE_S) < 0.3, (start / sr, end / sr)
    span = a[start:end].astype(np.float64)
    crossings = np.count_nonzero(np.diff(np.signbit(span - span.mean())))
    assert 1800 < crossings / ((end - start) / sr) < 2200
    # the normalised copy is cached beside the TTS cache, 8 kHz mono
    cached = list(Path(tts.cache_dir, "recordings").rglob("*.wav"))
    assert len(cached) == 1
    with wave.open(str(cached[0]), "rb") as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1)
