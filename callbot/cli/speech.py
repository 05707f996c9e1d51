"""``callbot listen`` (check a model on a recording), ``callbot models`` and ``callbot tts``."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from callbot import defaults
from callbot.exceptions import CallbotError


def _settings():  # type: ignore[no-untyped-def]
    from callbot.config import load_settings

    return load_settings()


def classify_reply(text: str, pinyin: str = "") -> tuple[str | None, Any, bool]:
    """(intent, value, urgent) of what the engine heard, from ``callbot.intents``; (None, None,
    False) when it answers nothing."""
    if not text and not pinyin:
        return None, None, False
    from callbot import intents

    answer = intents.classify(text, pinyin=pinyin or None)
    return (answer.intent, answer.value, answer.urgent) if answer else (None, None, False)


def listen_file(audio: Path, expect: list[str] | None, *, engine_name: str, model: str | None,
                no_input_s: float, max_reply_s: float, trailing_silence_s: float) -> dict[str, Any]:
    """Stream *audio* (resampled to 8 kHz) in 20 ms frames through the engine, as a call would.

    *expect* None: free-form (the keyword spotter listens for every intent's phrases)."""
    from callbot import intents
    from callbot.speech.asr import Final, NoInput, load_asr
    from callbot.speech.audio import frames, read_8k

    pcm = read_8k(audio)
    engine = load_asr(engine_name, model=model)
    phrases = expect if expect is not None else ([] if engine_name == "pinyin"
                                                 else intents.phrases())
    stream = engine.stream(phrases, no_input_s=no_input_s, max_reply_s=max_reply_s,
                           trailing_silence_s=trailing_silence_s)
    events = []
    silence = b"\0" * defaults.FRAME_BYTES
    # after the recording the line stays quiet, as when the callee stops talking
    tail = int((no_input_s + max_reply_s + trailing_silence_s) * 1000 / defaults.FRAME_MS)
    for frame in [*frames(pcm), *[silence] * tail]:
        events += stream.accept(frame)
        if stream.done:
            break
    events += stream.finish()
    final = next(e for e in events if isinstance(e, Final | NoInput))
    # with --expect the object is what it always was; free-form adds pinyin and urgent
    if isinstance(final, NoInput):
        if expect is not None:
            return {"text": "", "match": None, "intent": None, "value": None, "confidence": 0.0,
                    "end_s": None}
        return {"text": "", "pinyin": "", "intent": None, "value": None, "urgent": False,
                "confidence": 0.0, "end_s": None}
    intent, value, urgent = classify_reply(final.text, final.pinyin)
    if expect is not None:
        return {"text": final.text, "match": final.match, "intent": intent, "value": value,
                "confidence": final.confidence, "end_s": final.end_s}
    return {"text": final.text, "pinyin": final.pinyin, "intent": intent, "value": value,
            "urgent": urgent, "confidence": final.confidence, "end_s": final.end_s}


@click.command()
@click.argument("audio", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--expect", default=None,
              help="期望的短语，逗号分隔 (expected phrases, comma-separated), e.g. 需要,不需要,两个; "
                   "不写则自由识别 (omit: free-form recognition, classified over all intents)")
@click.option("--engine", "engine_name", type=click.Choice(["pinyin", "kws", "vosk"]), default=None,
              help="识别引擎 (ASR engine); default CALLBOT_ASR_ENGINE or pinyin.")
@click.option("--model", default=None, help="模型名或目录 (model name or directory).")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON (print one JSON object).")
@click.option("--no-input-s", type=float, default=defaults.ASR_NO_INPUT_S, show_default=True)
@click.option("--max-reply-s", type=float, default=defaults.ASR_MAX_REPLY_S, show_default=True)
@click.option("--trailing-silence-s", type=float, default=defaults.ASR_TRAILING_SILENCE_S,
              show_default=True)
def listen(audio: Path, expect: str | None, engine_name: str | None, model: str | None,
           as_json: bool, no_input_s: float, max_reply_s: float,
           trailing_silence_s: float) -> None:
    """用录音检查识别效果 (stream a recording through the recogniser as a call would)."""
    phrases: list[str] | None = None
    if expect is not None:
        phrases = [p.strip() for p in expect.replace("，", ",").split(",") if p.strip()]
        if not phrases:
            raise click.BadParameter("至少一个短语 (give at least one phrase)", param_hint="--expect")
    try:
        result = listen_file(audio, phrases, engine_name=engine_name or _settings().asr_engine,
                             model=model, no_input_s=no_input_s, max_reply_s=max_reply_s,
                             trailing_silence_s=trailing_silence_s)
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    labels = {"text": "听到 (text)", "pinyin": "拼音 (pinyin)", "match": "匹配 (match)",
              "intent": "意图 (intent)", "value": "取值 (value)", "urgent": "紧急 (urgent)",
              "confidence": "置信度 (confidence)", "end_s": "结束 (end_s)"}
    for key, label in labels.items():
        if key not in result:
            continue
        value = result[key]
        click.echo(f"{label}: {'—' if value is None or value == '' else value}")


@click.group()
def models() -> None:
    """语音模型：列出、下载、查路径 (speech models: list, download, path)."""


@models.command("list")
def models_list() -> None:
    """列出已知模型及安装位置 (known models and where they are)."""
    from callbot.speech import models as m

    settings = _settings()
    for spec, path in m.list_models(settings.models_dir):
        where = str(path) if path else f"未安装 (missing) → {_fetch_hint(spec)}"
        click.echo(f"{spec.name:<28} {spec.kind:<5} {where}")
        click.echo(f"{'':<28} {spec.description}")
    click.echo("搜索路径 (search path): " + ", ".join(str(d) for d in m.search_dirs(settings.models_dir)))


def _fetch_hint(spec) -> str:  # type: ignore[no-untyped-def]
    return f"pip install {spec.name}" if spec.package else f"callbot models download {spec.name}"


@models.command("download")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="解压到此目录 (unpack here); default CALLBOT_MODELS_DIR or ~/.cache/callbot/models.")
@click.option("--url", default=None, help="从镜像下载 (download from a mirror URL).")
@click.option("--sha256", default=None, help="期望的校验和 (expected archive checksum).")
@click.option("--force", is_flag=True, help="已存在也重新下载 (download again).")
def models_download(name: str, dest: Path | None, url: str | None, sha256: str | None,
                    force: bool) -> None:
    """下载并解压官方模型 (fetch, verify and unpack an official model archive)."""
    from callbot.speech import models as m

    settings = _settings()
    try:
        path = m.download(name, dest=dest or settings.models_dir, url=url, sha256=sha256,
                          force=force, progress=m.print_progress(name))
    except CallbotError as exc:
        sys.stderr.write("\n")
        raise click.ClickException(str(exc)) from exc
    sys.stderr.write("\n")
    click.echo(str(path))


@models.command("path")
@click.argument("name")
def models_path(name: str) -> None:
    """打印模型目录 (print the model's directory)."""
    from callbot.speech import models as m

    try:
        click.echo(str(m.find_model(name, models_dir=_settings().models_dir)))
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("text", required=False)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="复制到此文件 (copy the WAV here); default: print the cached path.")
@click.option("--engine", type=click.Choice(["edge", "espeak"]), default=None,
              help="首选引擎 (preferred engine); default CALLBOT_TTS_ENGINE or edge.")
@click.option("--voice", default=None, help="声音 (voice), e.g. zh-CN-XiaoxiaoNeural.")
@click.option("--rate", default=None, help="语速 (rate), e.g. -10%.")
@click.option("--recording", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="转换员工录音而非合成 (normalise a staff recording instead).")
def tts(text: str | None, output: Path | None, engine: str | None, voice: str | None,
        rate: str | None, recording: Path | None) -> None:
    """生成 8 kHz 提示音 (render a prompt, or normalise a recording, to 8 kHz WAV)."""
    from callbot.speech.tts import make_tts, normalise_recording

    try:
        if recording is not None:
            if output is None:
                raise click.BadParameter("需要 -o 输出文件 (give -o)", param_hint="--output")
            click.echo(str(normalise_recording(recording, output)))
            return
        if not text:
            raise click.BadParameter("需要提示文字 (give the prompt text)", param_hint="TEXT")
        logging.getLogger("callbot").setLevel(min(logging.getLogger().level, logging.WARNING))
        path = make_tts(_settings(), engine=engine).render(text, voice=voice, rate=rate)
    except (CallbotError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, output)
        path = output
    click.echo(str(path))
