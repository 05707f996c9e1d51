"""`callbot models`: downloads over real HTTP from a local server (127.0.0.1) serving archives built
here, checksum verification, unpacking, the search path, and the engine loading what was fetched."""

from __future__ import annotations

import functools
import hashlib
import http.server
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from callbot.exceptions import ModelNotFoundError, SpeechError
from callbot.speech import models
from tests.conftest import callbot_cmd, env_for_subprocess
from tests.speech.conftest import KWS_MODEL, REPLIES, listen

TOP = "sherpa-onnx-kws-zipformer-wenetspeech-3.3M-2024-01-01"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving files from a directory."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch) -> Path:
    """Models dir, user cache and cwd in tmp; no ../shared on the search path."""
    d = tmp_path / "models"
    monkeypatch.setenv("CALLBOT_MODELS_DIR", str(d))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "REPO", tmp_path / "repo")
    return d


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kws_archive(src: Path, root: Path) -> Path:
    """A .tar.bz2 laid out like the upstream release, holding the real model files."""
    archive = root / f"{TOP}.tar.bz2"
    with tarfile.open(archive, "w:bz2") as t:
        for f in sorted(src.iterdir()):
            if f.is_file():
                t.add(f, arcname=f"{TOP}/{f.name}")
    return archive


@pytest.mark.speech
def test_download_kws_model_then_recognise_with_it(server, isolated, kws_model_dir) -> None:
    url, root = server
    archive = _kws_archive(kws_model_dir, root)
    proc = subprocess.run(
        callbot_cmd("models", "download", KWS_MODEL, "--url", f"{url}/{archive.name}",
                    "--sha256", _sha(archive)),
        capture_output=True, text=True, env=env_for_subprocess(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    target = isolated / KWS_MODEL
    assert proc.stdout.strip() == str(target)
    assert "100%" in proc.stderr  # the progress bar reached the end
    assert (target / "tokens.txt").read_bytes() == (kws_model_dir / "tokens.txt").read_bytes()
    source = (target / ".callbot-source").read_text()
    assert _sha(archive) in source and url in source
    # the search path finds it first, and the engine works from it
    path = subprocess.run(callbot_cmd("models", "path", KWS_MODEL), capture_output=True,
                          text=True, env=env_for_subprocess(), timeout=60)
    assert path.stdout.strip() == str(target)
    from callbot.speech.kws import KwsEngine

    final = listen(KwsEngine(target, alignments=1), REPLIES / "buxuyao.wav", ["需要", "不需要"])
    assert final.match == "不需要"


def test_checksum_mismatch_leaves_nothing(server, isolated, tmp_path) -> None:
    url, root = server
    src = tmp_path / "fake"
    src.mkdir()
    (src / "tokens.txt").write_text("<blk> 0\n")
    (src / "encoder-x.onnx").write_bytes(b"\0" * 1000)
    archive = _kws_archive(src, root)
    with pytest.raises(SpeechError, match="checksum"):
        models.download(KWS_MODEL, url=f"{url}/{archive.name}", sha256="0" * 64)
    assert not (isolated / KWS_MODEL).exists()
    assert [p.name for p in isolated.iterdir()] == []  # no partial file or temp dir left
    # the registry checksum is the upstream one: a different archive is refused by default
    with pytest.raises(SpeechError, match="checksum"):
        models.download(KWS_MODEL, url=f"{url}/{archive.name}")


def test_vosk_zip_without_published_checksum(server, isolated, tmp_path, caplog) -> None:
    url, root = server
    name = "vosk-model-small-cn-0.22"
    with zipfile.ZipFile(root / f"{name}.zip", "w") as z:
        z.writestr(f"{name}/am/final.mdl", b"model bytes")
        z.writestr(f"{name}/conf/model.conf", "--min-active=200\n")
    path = models.download(name, url=f"{url}/{name}.zip")
    assert path == isolated / name and (path / "am" / "final.mdl").is_file()
    assert _sha(root / f"{name}.zip") in caplog.text  # printed so an admin can pin it
    assert models.find_model(name) == path
    listed = dict((s.name, p) for s, p in models.list_models())
    assert listed[name] == path and listed["vosk-model-cn-0.22"] is None


def test_unreachable_server_and_404_are_clear_errors(server, isolated) -> None:
    url, _ = server
    with pytest.raises(SpeechError, match="下载失败|download failed"):
        models.download(KWS_MODEL, url=f"{url}/missing.tar.bz2")
    with pytest.raises(SpeechError, match="download failed"):
        models.download(KWS_MODEL, url="http://127.0.0.1:9/none.tar.bz2")
    assert not isolated.exists() or not any(isolated.iterdir())


def test_archive_with_path_traversal_is_refused(server, isolated, tmp_path) -> None:
    url, root = server
    name = "vosk-model-small-cn-0.22"
    with zipfile.ZipFile(root / "evil.zip", "w") as z:
        z.writestr("../../evil.txt", b"x")
    with pytest.raises(SpeechError):
        models.download(name, url=f"{url}/evil.zip")
    assert not (tmp_path / "evil.txt").exists()


def test_search_path_order(isolated, tmp_path, monkeypatch) -> None:
    shared = tmp_path / "shared" / "models"
    (shared / "m1" / "am").mkdir(parents=True)
    (shared / "m1" / "am" / "final.mdl").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "shared")  # ../shared/models relative to the cwd
    assert models.find_model("m1", kind="vosk") == shared / "m1"
    (isolated / "m1" / "am").mkdir(parents=True)
    (isolated / "m1" / "am" / "final.mdl").write_bytes(b"y")
    assert models.find_model("m1", kind="vosk") == isolated / "m1"  # CALLBOT_MODELS_DIR first
    dirs = [d.resolve() for d in models.search_dirs()]
    assert dirs == [isolated.resolve(), shared.resolve(), (tmp_path / "cache/callbot/models").resolve()]


def test_cli_list_and_missing_path(isolated) -> None:
    env = env_for_subprocess(CALLBOT_MODELS_DIR=str(isolated),
                             XDG_CACHE_HOME=str(isolated.parent / "cache"))
    out = subprocess.run(callbot_cmd("models", "list"), capture_output=True, text=True, env=env,
                         cwd=isolated.parent, timeout=60)
    assert out.returncode == 0
    for name in models.MODELS:
        assert name in out.stdout
    missing = subprocess.run(callbot_cmd("models", "path", "vosk-model-cn-0.22"),
                             capture_output=True, text=True, env=env, cwd=isolated.parent,
                             timeout=60)
    assert missing.returncode != 0
    assert "callbot models download vosk-model-cn-0.22" in missing.stderr
    unknown = subprocess.run(callbot_cmd("models", "download", "no-such-model"),
                             capture_output=True, text=True, env=env, timeout=60)
    assert unknown.returncode != 0 and "no-such-model" in unknown.stderr


def test_missing_model_error_names_the_command(isolated) -> None:
    with pytest.raises(ModelNotFoundError, match=f"callbot models download {KWS_MODEL}"):
        models.find_model(KWS_MODEL)


def test_registry_points_at_the_official_archives() -> None:
    kws = models.MODELS[KWS_MODEL]
    assert kws.url.endswith(f"kws-models/{TOP}.tar.bz2") and len(kws.sha256 or "") == 64
    for name in ("vosk-model-small-cn-0.22", "vosk-model-cn-0.22"):
        assert models.MODELS[name].url == f"https://alphacephei.com/vosk/models/{name}.zip"
