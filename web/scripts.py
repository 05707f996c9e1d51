"""Scripts: the built-ins and uploaded YAML templates; upload or edit with validation errors at
their line; a "try it" box driving the dialogue engine by typing (like ``callbot simulate``);
staff recordings (WAV/MP3) a step plays instead of TTS; the prompts played in the browser."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import login_required
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, TextAreaField

from callbot import labels
from callbot.exceptions import CallbotError, MissingExtraError, SpeechError, TemplateError
from web import scriptstore
from web.auth import WRITE_ROLES, readable, record, roles_required
from web.scope import claim, require_visible, visible_scripts
from web.store import settings

bp = Blueprint("scripts", __name__, url_prefix="/scripts")

MAX_YAML_BYTES = 256 * 1024
MAX_RECORDING_BYTES = 10 * 1024 * 1024
"""Largest staff recording accepted (bytes); a few minutes of 44.1 kHz WAV."""
MAX_RECORDING_S = 120.0
"""A staff recording plays as one prompt of a call: at most 2 minutes (a 10 MB MP3 could hold
hours, decoded by sox while the upload request waits)."""
MAX_TRY_EVENTS = 60
SAMPLE_CONTACT = {"姓名": "张阿姨", "地址": "3号楼101室", "电话": "13800138000"}

NEW_TEMPLATE = """\
# 新话术：改好后点“检查并保存”。每个步骤用 say（只说）或 ask（提问并等待回答）。
name: my_script
title: 我的话术
description: 一句话说明这个话术做什么。
requires: [姓名]
fields:
  agree: bool
start: greet
steps:
  greet:
    say: "{{ 姓名 }}您好，这里是{{ 居委会 }}。"
    next: ask
  ask:
    ask: "请问您同意吗？同意请说“同意”或按1，不同意请按2。"
    keys: {1: yes, 2: no}
    answers:
      yes: {set: {agree: true}, next: bye}
      no: {set: {agree: false}, next: bye}
  bye:
    say: "好的，感谢您的配合，再见。"
    end: completed
"""


class EditForm(FlaskForm):
    """The template editor's form."""

    text = TextAreaField("话术 YAML")


class RecordingForm(FlaskForm):
    """The form that uploads a staff recording for a prompt."""

    file = FileField("录音文件（WAV/MP3）")


class DeleteRecordingForm(FlaskForm):
    """The form that removes a staff recording."""

    name = HiddenField()


def _visible_scripts() -> list[scriptstore.ScriptInfo]:
    return visible_scripts()


def _get(slug: str) -> scriptstore.ScriptInfo:
    if not scriptstore.valid_slug(slug):
        abort(404)
    info = scriptstore.find(slug)
    if info is None:
        abort(404)
    if not info.builtin:
        require_visible("script", slug)
    return info


@bp.route("/")
@readable
def index() -> Any:
    """Built-in and uploaded scripts, and the upload form."""
    return render_template("scripts/index.html", scripts=_visible_scripts(), form=EditForm())


def _numbered(text: str, problems: list[scriptstore.Problem]) -> list[tuple[int, str, bool]]:
    bad = {p.line for p in problems if p.line}
    return [(i, line, i in bad) for i, line in enumerate(text.splitlines() or [""], start=1)]


@bp.route("/<slug>")
@readable
def show(slug: str) -> Any:
    """The template with line numbers, its fields and steps, the try-it box and the prompts."""
    return _show_page(_get(slug))


def _show_page(info: scriptstore.ScriptInfo, rec_error: str | None = None) -> str:
    text = scriptstore.source(info)
    tpl, problems = scriptstore.validate_info(info)
    return render_template("scripts/show.html", info=info, text=text, tpl=tpl,
                           problems=problems, lines=_numbered(text, problems),
                           prompts=_prompts(tpl), sample=SAMPLE_CONTACT, form=EditForm(),
                           duty=_duty_plan(),
                           recordings=scriptstore.list_recordings(info, tpl),
                           rec_form=RecordingForm(), rec_error=rec_error,
                           max_recording_mb=MAX_RECORDING_BYTES // (1024 * 1024))


def _prompts(tpl: Any) -> list[dict[str, Any]]:
    """What the preview plays: each step with a recording (its transcript beside it), then every
    text the TTS says (``all_prompts`` leaves the recorded steps out)."""
    if tpl is None:
        return []
    committee = settings().committee
    ctx = tpl.context(SAMPLE_CONTACT, committee=committee)
    out: list[dict[str, Any]] = []
    for name, step in tpl.steps.items():
        if step.audio is not None:
            try:
                text = tpl.render(step.text, ctx)
            except TemplateError:
                text = step.text
            audio = Path(step.audio)
            out.append({"text": text, "audio": audio, "step": name,
                        "v": _version(f"{audio}:{audio.stat().st_mtime_ns}")})
    out += [{"text": t, "audio": None, "step": None, "v": _version(t)}
            for t in tpl.all_prompts(SAMPLE_CONTACT, committee=committee)]
    return out


def _version(key: str) -> str:
    """A short tag for the preview URL, so a browser never replays an hour-cached old prompt
    after the template or a recording changed (the URL is by index)."""
    import hashlib

    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]


def _save(text: str, filename: str, *, replace: str | None = None) -> Any:
    """Validate and save; on errors re-show the editor with every error at its line (400)."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        problems = [scriptstore.Problem(None, f"文件太大（上限 {MAX_YAML_BYTES // 1024} KB）")]
        return _editor(text, problems, replace), 400
    try:
        tpl, problems = scriptstore.validate(text, filename)
    except CallbotError as exc:  # an unexpected engine complaint still shows on the page
        tpl, problems = None, [scriptstore.Problem(None, str(exc))]
    if tpl is None:
        return _editor(text, problems, replace), 400
    slug = tpl.name
    if slug in scriptstore.BUILTIN_TITLES or slug in {s.slug for s in scriptstore.all_scripts()
                                                       if s.builtin}:
        problems = [scriptstore.Problem(_line_of(text, "name"),
                                        f"name “{slug}” 是内置话术的名字，请换一个（例如 {slug}_2）")]
        return _editor(text, problems, replace), 400
    existing = scriptstore.find(slug)
    if existing is not None and replace != slug:
        problems = [scriptstore.Problem(_line_of(text, "name"),
                                        f"已有名为 “{slug}” 的话术；请修改 name，或去编辑那个话术")]
        return _editor(text, problems, replace), 400
    if replace is not None and replace != slug:
        problems = [scriptstore.Problem(_line_of(text, "name"),
                                        f"编辑时不能修改 name（原为 {replace}）；要另存请新建话术")]
        return _editor(text, problems, replace), 400
    path = scriptstore.scripts_dir() / f"{slug}.yaml"
    path.write_text(text, "utf-8")
    if existing is None:
        claim("script", slug)
    record("script_save", f"script:{slug}", "edit" if replace else "new")
    from web.store import db

    db().commit()
    flash(f"话术“{tpl.title}”已保存。", "ok")
    for w in getattr(tpl, "warnings", []) or []:
        flash(f"提示：第 {w.line} 行 {w.message}", "info")
    return redirect(url_for("scripts.show", slug=slug))


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^{key}\s*:", line):
            return i
    return None


def _editor(text: str, problems: list[scriptstore.Problem], replace: str | None) -> str:
    form = EditForm(text=text)
    return render_template("scripts/edit.html", form=form, problems=problems,
                           lines=_numbered(text, problems), replace=replace)


@bp.route("/new", methods=["GET", "POST"])
@roles_required(*WRITE_ROLES)
def new() -> Any:
    """Write a new script in the browser (optionally starting from a copy of another)."""
    form = EditForm()
    if request.method == "POST":
        if form.validate_on_submit():
            return _save(form.text.data or "", "新话术.yaml")
        return _editor(form.text.data or "", [scriptstore.Problem(None, f"表单无效，请刷新页面后重试：{form.errors}")],
                       None), 400
    text = NEW_TEMPLATE
    copy = request.args.get("copy")
    if copy:
        info = _get(copy)
        text = scriptstore.source(info)
        text = re.sub(r"^name:\s*(\S+)", lambda m: f"name: {m.group(1)}_copy", text, count=1,
                      flags=re.M)
    return render_template("scripts/edit.html", form=EditForm(text=text), problems=[],
                           lines=[], replace=None)


@bp.route("/<slug>/edit", methods=["GET", "POST"])
@roles_required(*WRITE_ROLES)
def edit(slug: str) -> Any:
    """Edit an uploaded script (built-ins are copied, not edited)."""
    info = _get(slug)
    if info.builtin:
        return redirect(url_for("scripts.new", copy=slug))
    form = EditForm()
    if request.method == "POST" and form.validate_on_submit():
        return _save(form.text.data or "", f"{slug}.yaml", replace=slug)
    text = scriptstore.source(info)
    return render_template("scripts/edit.html", form=EditForm(text=text), problems=[],
                           lines=[], replace=slug)


@bp.route("/upload", methods=["POST"])
@roles_required(*WRITE_ROLES)
def upload() -> Any:
    """Upload a YAML file; errors are shown at their line and nothing is saved."""
    EditForm().validate_on_submit()
    f = request.files.get("file")
    if f is None or not f.filename:
        return _editor("", [scriptstore.Problem(None, "请选择要上传的 YAML 文件。")], None), 400
    name = Path(f.filename).name
    if not name.lower().endswith((".yaml", ".yml")):
        return _editor("", [scriptstore.Problem(None, f"不支持的文件类型：{name}（请上传 .yaml）")],
                       None), 400
    data = f.read(MAX_YAML_BYTES + 1)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _editor("", [scriptstore.Problem(None, f"{name} 不是 UTF-8 编码的文本")], None), 400
    return _save(text, name)


# --- try it ---------------------------------------------------------------------------------

@bp.route("/<slug>/try", methods=["POST"])
@login_required  # a POST that changes nothing: supervisors may try scripts too
def try_it(slug: str) -> Any:
    """Run the engine by typing. The client keeps the replies so far; the engine is pure, so
    replaying them gives the same state (no per-user engine lives on the server)."""
    info = _get(slug)
    body = request.get_json(silent=True)
    if body is None and request.get_data():
        return jsonify({"error": "请求格式不对（应为 JSON 对象）"}), 400
    if body is None:
        body = {}
    state = body.get("state") if isinstance(body, dict) else None
    state = state if state is not None else {"replies": []}
    if not isinstance(body, dict) or not isinstance(state, dict) \
            or not isinstance(state.get("replies") or [], list):
        return jsonify({"error": "请求格式不对（应为 JSON 对象）"}), 400
    replies = [str(r)[:200] for r in (state.get("replies") or [])][:MAX_TRY_EVENTS]
    if not body.get("start"):
        replies.append(str(body.get("reply", ""))[:200])
    # 转人工 is played, never dialled: the duty phone answers, or not, as the box says (kept in
    # the state so replaying the replies gives the same call)
    duty = str(state.get("duty") or body.get("duty") or "answers")
    from callbot.transfer import DRY_RUN_DUTY, DryRunTransfer

    duty = duty if duty in DRY_RUN_DUTY else "answers"
    plan = _duty_plan()
    contact = dict(SAMPLE_CONTACT)
    for pair in str(body.get("vars") or "").split(","):
        if "=" in pair:
            k, v = pair.split("=", 1)
            if k.strip():
                contact[k.strip()[:40]] = v.strip()[:100]
    try:
        from callbot.dialogue import DialogueEngine, typed_events
        from callbot.script import load_script

        tpl = load_script(info.ref if info.builtin else Path(info.ref))
        engine = DialogueEngine(tpl, contact, committee=settings().committee,
                                can_transfer=bool(plan["to"]))
        played = DryRunTransfer(engine, plan, duty)  # the transfer's outcome as the box says

        actions = engine.start()
        for r in replies:
            actions = []
            for ev in typed_events(r):
                if engine.ended is not None:
                    break
                actions += played(engine.on(ev))
        lines = _lines(actions, plan, duty)
        return jsonify({"state": {"replies": replies, "duty": duty}, "lines": lines,
                        "answers": _jsonable(engine.answers),
                        "ended": labels.ended(engine.ended) if engine.ended else None,
                        "alerts": [{"reason": a.reason, "urgent": a.urgent, "said": a.said,
                                    "detail": a.detail} for a in engine.alerts],
                        "transfer": played.transfer})
    except TemplateError as exc:
        return jsonify({"error": str(exc)}), 400


def _duty_plan() -> dict[str, Any]:
    """Where a transfer would go: the viewer's committee's duty phone (else the installation's)."""
    from flask_login import current_user

    from callbot.committees import config_for
    from web.store import db

    committee = getattr(current_user, "committee", None) if current_user.role == "staff" else None
    cfg = config_for(db(), committee, settings())
    return {"to": cfg.duty_number, "timeout_s": cfg.transfer_timeout_s}


def _lines(actions: list[Any], plan: dict[str, Any] | None = None,
           duty: str = "answers") -> list[dict[str, str]]:
    out = []
    for a in actions:
        kind = type(a).__name__
        if kind == "Alert":
            text = f"提醒（试一试不发送）：{'紧急 · ' if a.urgent else ''}" \
                   f"{labels.follow_up_reason(a.reason)}"
            if a.said:
                text += f" · 原话“{a.said}”"
            if a.detail:
                text += f" · {a.detail}"
            out.append({"cls": "alert urgent" if a.urgent else "alert", "text": text})
        elif kind == "Transfer":
            to = (plan or {}).get("to")
            played = ("值班电话接听，居民和值班人员接通" if duty == "answers" else "值班电话无人接听") \
                if to else "没有配置值班电话"
            out.append({"cls": "sys transfer",
                        "text": f"转人工 → {to or '（未配置）'}（试一试不拨打，假定{played}）"})
        elif kind == "Say":
            out.append({"cls": "bot", "text": str(getattr(a, "text", a))})
        elif kind == "Record":
            out.append({"cls": "sys", "text": f"记录 {a.field} = {a.value}"})
        elif kind == "HangUp":
            out.append({"cls": "sys", "text": f"挂断（{getattr(a, 'reason', '')}）"})
        elif kind == "Listen":
            out.append({"cls": "sys", "text": "（等待回答…）"})
    return out


def _jsonable(d: Any) -> Any:
    import json

    return json.loads(json.dumps(dict(d or {}), ensure_ascii=False, default=str))


# --- prompts as audio ------------------------------------------------------------------------

@bp.route("/<slug>/prompts/<int:index>.wav")
@readable
def prompt_audio(slug: str, index: int) -> Any:
    """One prompt as the call plays it: a step's recording normalised to 8 kHz, else the text
    rendered by the configured TTS (both cached)."""
    info = _get(slug)
    tpl, _problems = scriptstore.validate_info(info)
    prompts = _prompts(tpl)
    if not 0 <= index < len(prompts):
        abort(404)
    if prompts[index]["audio"] is not None:
        try:
            path = _normalised(prompts[index]["audio"])
        except CallbotError as exc:
            current_app.logger.warning("recording failed: %s", exc)
            abort(503, f"录音无法播放：{exc}")
        return send_file(path, mimetype="audio/wav", max_age=3600)
    try:
        from callbot.speech.tts import make_tts
    except ImportError as exc:
        abort(503, f"语音合成不可用（speech 模块或扩展未安装：pip install 'callbot[speech]'）：{exc}")
    try:
        path = make_tts(settings()).render(prompts[index]["text"])
    except MissingExtraError as exc:
        abort(503, f"语音合成不可用：{exc}")
    except CallbotError as exc:
        current_app.logger.warning("TTS failed: %s", exc)
        abort(503, f"语音合成失败：{exc}")
    return send_file(path, mimetype="audio/wav", max_age=3600)


# --- staff recordings ------------------------------------------------------------------------

def _normalised(src: Path) -> Path:
    """*src* as 8 kHz mono WAV via the call's own normaliser; SpeechError when it does not decode.
    The cache is the one calls use with the default renderer (``<cache>/tts/recordings``)."""
    from callbot.prompts import recording_file

    return recording_file(src, settings().cache_dir / "tts" / "recordings")


def _header_seconds(path: Path) -> float | None:
    """The length a file's header states (``sox --i -D`` reads headers, not audio: ~0.1 s for a
    10 MB MP3); None when sox cannot tell (the decoder then says why the file is bad)."""
    import shutil
    import subprocess

    sox = shutil.which("sox")
    if sox is None:
        return None
    try:
        proc = subprocess.run([sox, "--i", "-D", "-V1", str(path)], capture_output=True,
                              text=True, timeout=10)
        return float(proc.stdout.strip()) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        return None


def _wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate() or 1)


def _too_long(seconds: float | None) -> str | None:
    if seconds is None or seconds <= MAX_RECORDING_S + 0.5:
        return None
    m, sec = divmod(int(round(seconds)), 60)
    return (f"录音太长（{m} 分 {sec} 秒），一段录音最长 {int(MAX_RECORDING_S // 60)} 分钟。"
            "请剪短后再上传（较长的内容可以分成几个步骤）。")


def _writable(slug: str) -> scriptstore.ScriptInfo:
    info = _get(slug)
    if info.builtin:
        abort(403, "内置话术只读；请先“复制为新话术”，再给复制出来的话术上传录音。")
    return info


@bp.route("/<slug>/recordings", methods=["POST"])
@roles_required(*WRITE_ROLES)
def upload_recording(slug: str) -> Any:
    """Store a WAV/MP3 next to the template after checking it decodes; on any problem the page
    says why (400) and nothing is saved."""
    info = _writable(slug)
    RecordingForm().validate_on_submit()  # CSRF is checked for every POST by CSRFProtect
    f = request.files.get("file")
    if f is None or not f.filename:
        return _show_page(info, "请选择要上传的录音文件（WAV 或 MP3）。"), 400
    name = scriptstore.recording_name(f.filename)
    if name is None:
        shown = Path(f.filename.replace("\\", "/")).name
        if not shown.lower().endswith(scriptstore.RECORDING_SUFFIXES):
            msg = f"不支持的文件类型：{shown}（只能上传 .wav 或 .mp3 录音）"
        else:
            msg = f"文件名 {shown} 无法使用，请改用中文、字母、数字或下划线命名后再上传。"
        return _show_page(info, msg), 400
    data = f.read(MAX_RECORDING_BYTES + 1)
    if len(data) > MAX_RECORDING_BYTES:
        return _show_page(info, f"录音文件太大（上限 {MAX_RECORDING_BYTES // (1024 * 1024)} MB），"
                                f"请剪短或转成 MP3 后再上传。"), 400
    folder = scriptstore.recordings_dir(slug)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(name).suffix
    tmp = folder / f".upload-{secrets.token_hex(8)}{suffix}"  # sox picks the decoder by suffix
    try:
        tmp.write_bytes(data)
        too_long = _too_long(_header_seconds(tmp))  # from the header, before any decoding
        if too_long:
            return _show_page(info, too_long), 400
        try:
            out = _normalised(tmp)  # checks the level as recorded, before it raises the gain
        except SpeechError as exc:
            current_app.logger.info("recording %s refused: %s", name, exc)
            return _show_page(info, f"无法读取录音 {name}：文件不是有效的 {suffix[1:].upper()} 音频，"
                                    f"或者几乎没有声音。请换一个录音文件。"), 400
        too_long = _too_long(_wav_seconds(out))  # a header can lie; the decoded audio cannot
        if too_long:
            return _show_page(info, too_long), 400
        dest = folder / name
        replaced = dest.exists()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    record("recording_upload", f"script:{slug}", f"{name}{' (替换)' if replaced else ''}")
    from web.store import db

    db().commit()
    flash(f"录音“{name}”已{'替换' if replaced else '上传'}。在话术步骤里写 audio: {slug}/{name} "
          f"即可使用。", "ok")
    return redirect(url_for("scripts.show", slug=slug) + "#recordings")


@bp.route("/<slug>/recordings/delete", methods=["POST"])
@roles_required(*WRITE_ROLES)
def delete_recording(slug: str) -> Any:
    """Delete a stored recording, unless a step of the script still plays it."""
    info = _writable(slug)
    form = DeleteRecordingForm()
    form.validate_on_submit()
    name = str(form.name.data or "")
    path = scriptstore.recording_path(slug, name)
    if path is None:
        return _show_page(info, f"没有名为“{name}”的录音。"), 404
    tpl, _problems = scriptstore.validate_info(info)
    if tpl is not None:
        used = scriptstore.steps_using(tpl, path)
    else:  # the template has errors: look for the file name on its audio: lines instead
        used = [f"第 {i} 行" for i, line in enumerate(scriptstore.source(info).splitlines(), 1)
                if re.match(r"^\s*audio\s*:", line) and name in line]
    if used:
        return _show_page(info, f"录音“{name}”仍被步骤 {'、'.join(used)} 使用，不能删除。"
                                f"请先编辑话术，去掉这些步骤的 audio: {slug}/{name}，再删除。"), 400
    path.unlink()
    record("recording_delete", f"script:{slug}", name)
    from web.store import db

    db().commit()
    flash(f"录音“{name}”已删除。", "ok")
    return redirect(url_for("scripts.show", slug=slug) + "#recordings")
