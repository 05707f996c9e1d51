"""Staff recordings in the web app: upload (checked by decoding with the call's own normaliser),
list, delete unless a step plays it, and the prompt preview playing the recording at 8 kHz."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.web.conftest import csrf_token, post

TONE_S = 2.0
TONE_HZ = 1000

WATER = """\
name: water_check
title: 停水通知
requires: [姓名]
start: greet
steps:
  greet:
    say: "{{ 姓名 }}您好，明天上午停水。"
    next: bye
  bye:
    say: "谢谢，再见。"
    end: completed
"""
RECORDED = WATER.replace('    next: bye\n', '    audio: water_check/停水通知.wav\n    next: bye\n', 1)


def _tone(path: Path, rate: int = 44100, channels: int = 2, seconds: float = TONE_S) -> Path:
    """A 1 kHz tone as a staff member's recorder might save it (44.1 kHz stereo)."""
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (scripts/setup installs it)")
    subprocess.run(["sox", "-n", "-r", str(rate), "-c", str(channels), "-b", "16", str(path),
                    "synth", str(seconds), "sine", str(TONE_HZ), "vol", "0.5"], check=True)
    return path


def _upload(c, slug: str, data: bytes, filename: str, token: str | None = None):  # type: ignore[no-untyped-def]
    token = token or csrf_token(c, f"/scripts/{slug}")
    return c.post(f"/scripts/{slug}/recordings",
                  data={"csrf_token": token, "file": (io.BytesIO(data), filename)},
                  content_type="multipart/form-data")


@pytest.fixture
def staff(app, login_as):  # type: ignore[no-untyped-def]
    """staff_a with the uploaded script water_check (no recording yet)."""
    c = login_as("staff_a")
    r = post(c, "/scripts/new", {"text": WATER}, page="/scripts/new")
    assert r.status_code == 302, r.get_data(as_text=True)
    return c


def _folder(app) -> Path:  # type: ignore[no-untyped-def]
    return Path(app.config["SCRIPTS_DIR"]) / "water_check"


def _stored(app) -> list[str]:  # type: ignore[no-untyped-def]
    d = _folder(app)
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _audit(app, action: str) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from callbot.accounts import AuditLog

    with app.extensions["callbot_sessionmaker"]() as s:
        rows = s.scalars(select(AuditLog).where(AuditLog.action == action)).all()
        return [(a.user_name, a.target or "", a.detail or "") for a in rows]


def test_upload_use_preview_and_delete(app, staff, tmp_path: Path) -> None:
    c = staff
    wav = _tone(tmp_path / "tone.wav").read_bytes()
    # saving a step whose recording is not there yet: the error says to upload it first
    r = post(c, "/scripts/water_check/edit", {"text": RECORDED}, page="/scripts/water_check/edit")
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "第 8 行" in html and "停水通知.wav" in html
    assert "请先在话术页面的“录音”部分上传" in html

    r = _upload(c, "water_check", wav, "停水通知.wav")
    assert r.status_code == 302 and r.headers["Location"].endswith("/scripts/water_check#recordings")
    assert _stored(app) == ["停水通知.wav"]  # the Chinese name survives, no temp file is left
    assert (_folder(app) / "停水通知.wav").read_bytes() == wav  # kept as uploaded
    html = c.get("/scripts/water_check").get_data(as_text=True)
    assert "已上传" in html and "audio: water_check/停水通知.wav" in html and "未使用" in html

    r = post(c, "/scripts/water_check/edit", {"text": RECORDED}, page="/scripts/water_check/edit")
    assert r.status_code == 302, r.get_data(as_text=True)
    # a campaign loads the template by path: the engine finds the recording the same way
    from callbot.script import load_script

    script = load_script(Path(app.config["SCRIPTS_DIR"]) / "water_check.yaml")
    assert script.steps["greet"].audio == (_folder(app) / "停水通知.wav").resolve()
    html = c.get("/scripts/water_check").get_data(as_text=True)
    prompts = html.split('id="prompts"', 1)[1].split("</ol>", 1)[0]
    first = prompts.split("<li", 2)[1]
    assert "录音" in first and "张阿姨您好，明天上午停水。" in first and "greet" in first
    assert "谢谢，再见。" in prompts and prompts.count('class="recorded"') == 1

    # the preview plays the recording, normalised for the phone: 8 kHz mono, 2 s of 1 kHz tone
    r = c.get("/scripts/water_check/prompts/0.wav")
    assert r.status_code == 200 and r.mimetype == "audio/wav"
    with wave.open(io.BytesIO(r.data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    assert abs(len(pcm) / 8000 - TONE_S) < 0.05
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(pcm ** 2)) / 32768)
    assert rms_dbfs > -12  # a loud steady tone, not speech with pauses
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) * 8000 / len(pcm) - TONE_HZ) < 5

    # uploading the same name again replaces it; the preview URL changes with it
    src = re.search(r'<audio[^>]*src="([^"]+)"', first).group(1)
    r = _upload(c, "water_check", _tone(tmp_path / "short.wav", seconds=1.0).read_bytes(),
                "停水通知.wav")
    assert r.status_code == 302 and _stored(app) == ["停水通知.wav"]
    html = c.get("/scripts/water_check").get_data(as_text=True)
    assert "已替换" in html
    new_src = re.search(r'<audio[^>]*src="([^"]+)"', html.split('id="prompts"', 1)[1]).group(1)
    assert new_src != src and new_src.split("?")[0] == src.split("?")[0]
    with wave.open(io.BytesIO(c.get(new_src.replace("&amp;", "&")).data)) as w:
        assert abs(w.getnframes() / 8000 - 1.0) < 0.05

    # the recording is in use: deleting it is refused and names the step
    r = post(c, "/scripts/water_check/recordings/delete", {"name": "停水通知.wav"},
             page="/scripts/water_check")
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "greet" in html and "不能删除" in html
    assert _stored(app) == ["停水通知.wav"]
    # once no step uses it, it can go
    assert post(c, "/scripts/water_check/edit", {"text": WATER},
                page="/scripts/water_check/edit").status_code == 302
    r = post(c, "/scripts/water_check/recordings/delete", {"name": "停水通知.wav"},
             page="/scripts/water_check")
    assert r.status_code == 302 and _stored(app) == []
    assert "已删除" in c.get("/scripts/water_check").get_data(as_text=True)
    assert _audit(app, "recording_upload") == [("staff_a", "script:water_check", "停水通知.wav"),
                                               ("staff_a", "script:water_check", "停水通知.wav (替换)")]
    assert _audit(app, "recording_delete") == [("staff_a", "script:water_check", "停水通知.wav")]


def test_mp3_at_any_rate_and_safe_names(app, staff, tmp_path: Path) -> None:
    mp3 = _tone(tmp_path / "t.mp3", rate=22050, channels=1).read_bytes()
    r = _upload(staff, "water_check", mp3, "..\\..\\欢迎 词.MP3")
    assert r.status_code == 302
    r = _upload(staff, "water_check", mp3, "../../../etc/问候.mp3")
    assert r.status_code == 302
    assert _stored(app) == ["欢迎_词.mp3", "问候.mp3"]  # folders dropped, Chinese kept
    assert not (Path(app.config["SCRIPTS_DIR"]).parent / "etc").exists()
    # a name with nothing usable left is refused
    r = _upload(staff, "water_check", mp3, "../.mp3")
    assert r.status_code == 400 and "无法使用" in r.get_data(as_text=True)
    # deleting only ever names a file inside the script's folder
    (Path(app.config["SCRIPTS_DIR"]) / "other.wav").write_bytes(b"x")
    r = post(staff, "/scripts/water_check/recordings/delete", {"name": "../other.wav"},
             page="/scripts/water_check")
    assert r.status_code == 404 and (Path(app.config["SCRIPTS_DIR"]) / "other.wav").exists()


@pytest.mark.parametrize("case", ["not_audio", "mp3_as_wav", "wrong_extension", "too_big",
                                  "silence", "hiss", "no_file", "too_long_wav", "too_long_mp3"])
def test_bad_upload_shows_error_and_saves_nothing(app, staff, tmp_path: Path, case: str) -> None:
    from web.scripts import MAX_RECORDING_BYTES

    files = {
        "not_audio": (b"RIFF....WAVEfmt this is not audio at all" * 10, "问候.wav", "无法读取录音"),
        "mp3_as_wav": (b"hello, I am a text file\n" * 100, "问候.mp3", "无法读取录音"),
        "wrong_extension": (_tone(tmp_path / "t.wav").read_bytes(), "问候.ogg", "不支持的文件类型"),
        "too_big": (b"\0" * (MAX_RECORDING_BYTES + 1), "问候.wav", "录音文件太大"),
        "no_file": (b"", "", "请选择要上传的录音文件"),
    }
    if case == "silence":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:  # digital silence: decodes, but nothing to hear
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(b"\0\0" * 32000)
        files["silence"] = (buf.getvalue(), "静音.wav", "无法读取录音")
    if case == "hiss":  # a muted microphone: only dither noise, which normalising would amplify
        if shutil.which("sox") is None:
            pytest.skip("sox is not installed")
        p = tmp_path / "hiss.wav"
        subprocess.run(["sox", "-n", "-r", "44100", "-c", "1", "-b", "16", str(p), "trim", "0",
                        "2"], check=True)
        files["hiss"] = (p.read_bytes(), "静音.wav", "几乎没有声音")
    if case == "too_long_wav":  # 3 minutes at 8 kHz: 2.9 MB, well under the size limit
        files[case] = (_tone(tmp_path / "long.wav", rate=8000, channels=1, seconds=180)
                       .read_bytes(), "长.wav", "录音太长（3 分 0 秒）")
    if case == "too_long_mp3":
        files[case] = (_tone(tmp_path / "long.mp3", rate=8000, channels=1, seconds=130)
                       .read_bytes(), "长.mp3", "录音太长（2 分 10 秒）")
    data, name, error = files[case]
    r = _upload(staff, "water_check", data, name)
    html = r.get_data(as_text=True)
    assert r.status_code == 400, html[:300]
    m = re.search(r'id="recording-error">([^<]*)<', html)
    assert m and error in m.group(1), html[-3000:]
    assert _stored(app) == []
    assert _audit(app, "recording_upload") == []


def test_roles_csrf_and_scope(app, staff, login_as, tmp_path: Path) -> None:
    wav = _tone(tmp_path / "t.wav").read_bytes()
    # no CSRF token → 400, nothing saved
    r = staff.post("/scripts/water_check/recordings",
                   data={"file": (io.BytesIO(wav), "a.wav")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    assert _stored(app) == []
    assert _upload(staff, "water_check", wav, "a.wav").status_code == 302
    # the supervisor sees the list but may not change it
    sup = login_as("super")
    html = sup.get("/scripts/water_check").get_data(as_text=True)
    assert "a.wav" in html and 'id="recording-upload"' not in html
    token = csrf_token(sup, "/scripts/water_check")
    assert _upload(sup, "water_check", wav, "b.wav", token=token).status_code == 403
    r = sup.post("/scripts/water_check/recordings/delete",
                 data={"csrf_token": token, "name": "a.wav"})
    assert r.status_code == 403 and _stored(app) == ["a.wav"]
    # another committee's staff does not see the script at all; logged out → login
    assert _upload(login_as("staff_b"), "water_check", wav, "b.wav").status_code == 404
    anon = app.test_client()
    r = anon.post("/scripts/water_check/recordings",
                  data={"csrf_token": csrf_token(anon, "/login")})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    # built-ins are read-only: copy first
    assert _upload(staff, "mask_reservation", wav, "b.wav").status_code == 403
    html = staff.get("/scripts/mask_reservation").get_data(as_text=True)
    assert "内置话术只读，不能上传录音" in html and "复制为新话术" in html
    assert _stored(app) == ["a.wav"]


@pytest.mark.browser
@pytest.mark.slow
def test_recording_in_chromium(data_dir: Path, tmp_path: Path) -> None:
    """Staff upload a recording through the form, make a step use it, and see it marked 录音."""
    from tests.web.browser import (
        chromium,
        login,
        need_chromium,
        new_page,
        run_cli,
        served,
        shot,
        web_env,
    )

    need_chromium()
    env = web_env(data_dir)
    pw = "browser-pass-1"
    run_cli(env, "users", "add", "小张", "--role", "staff", "--committee", "东风居委会",
            "--password", pw)
    tone = _tone(tmp_path / "停水通知.wav")
    not_audio = tmp_path / "假录音.wav"
    not_audio.write_text("这不是录音", "utf-8")
    dialogs: list[str] = []
    with served(env, tmp_path) as base, chromium() as browser:
        page = new_page(browser, dialogs)
        login(page, base, "小张", pw)
        page.goto(f"{base}/scripts/new")
        page.fill("#text", WATER)
        page.click("button:has-text('检查并保存')")
        page.wait_for_url(f"{base}/scripts/water_check")
        assert "还没有上传录音" in page.inner_text("#recordings")

        # a file that is not audio: the error is shown, nothing listed
        page.set_input_files("#recording-file", str(not_audio))
        page.click("button:has-text('上传录音')")
        assert "无法读取录音" in page.inner_text("#recording-error")
        assert page.locator("#recordings-list").count() == 0

        page.set_input_files("#recording-file", str(tone))
        page.click("button:has-text('上传录音')")
        page.wait_for_url(re.compile(r".*/scripts/water_check#recordings$"))
        assert "录音“停水通知.wav”已上传" in page.inner_text(".flash.ok")
        row = page.inner_text("#recordings-list")
        assert "audio: water_check/停水通知.wav" in row and "未使用" in row

        page.click("text=编辑")
        page.fill("#text", RECORDED)
        page.click("button:has-text('检查并保存')")
        page.wait_for_url(f"{base}/scripts/water_check")
        if page.get_attribute("#prompts-box", "open") is None:
            page.click("#prompts-box summary")
        first = page.locator("#prompts li").first
        assert "录音" in first.inner_text() and "张阿姨您好，明天上午停水。" in first.inner_text()
        assert "greet" in page.inner_text("#recordings-list")
        assert page.locator("#recordings-list button:has-text('删除')").is_disabled()
        # what the <audio> element plays is the recording, as 8 kHz WAV
        src = first.locator("audio").get_attribute("src")
        info = page.evaluate("""async (src) => {
            const r = await fetch(src);
            const b = new DataView(await r.arrayBuffer());
            return {status: r.status, type: r.headers.get('content-type'),
                    rate: b.getUint32(24, true), bytes: b.byteLength};
        }""", src)
        assert info["status"] == 200 and info["type"] == "audio/wav" and info["rate"] == 8000
        assert abs((info["bytes"] - 44) / 16000 - TONE_S) < 0.05
        shot(page, "scripts-recording")
    assert dialogs == []
