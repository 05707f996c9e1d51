"""Contact lists: upload CSV/XLSX → preview (mapped columns, first rows, every bad row) → confirm.

Nothing is stored in the database before the user confirms: the uploaded bytes wait in a
private upload folder under a random token, bound to the user who uploaded them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import func, select
from wtforms import StringField
from wtforms.validators import Length

from callbot.campaign.lists import save_list
from callbot.campaign.models import Contact, ContactList
from callbot.contacts import ImportPreview, parse_contacts
from callbot.exceptions import ContactFileError
from web.auth import WRITE_ROLES, readable, record, roles_required
from web.scope import claim, hidden_ids, require_visible
from web.store import db

bp = Blueprint("lists", __name__, url_prefix="/lists")

PREVIEW_ROWS = 20
UPLOAD_TTL_S = 3600
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
PAGE_SIZE = 100
MAX_PAGE = 100_000
"""Pages past this are clamped (an offset the database can hold; no list is that long)."""


class UploadForm(FlaskForm):
    """The contact-list upload form."""

    file = FileField("名单文件（.xlsx 或 .csv）")
    name = StringField("名单名称", validators=[Length(max=200)])


class ConfirmForm(FlaskForm):
    """The form that keeps a previewed upload as a list."""

    name = StringField("名单名称", validators=[Length(max=200)])


def _write_private(path: Path, data: bytes) -> None:
    """Write a new file readable by this user only (0600, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _upload_dir() -> Path:
    return Path(current_app.config["UPLOAD_DIR"])


def _cleanup_old() -> None:
    now = time.time()
    for p in _upload_dir().glob("*.json"):
        if now - p.stat().st_mtime > UPLOAD_TTL_S:
            p.unlink(missing_ok=True)
            p.with_suffix(".bin").unlink(missing_ok=True)


def _load_pending(token: str) -> tuple[dict[str, Any], bytes]:
    """The pending upload of this user, or 404."""
    if not _TOKEN_RE.match(token):
        abort(404)
    meta_path = _upload_dir() / f"{token}.json"
    if not meta_path.is_file():
        abort(404, "这个上传已过期或已处理，请重新上传。")
    meta = json.loads(meta_path.read_text("utf-8"))
    if meta.get("user_id") != current_user.id:
        abort(404)
    return meta, (_upload_dir() / f"{token}.bin").read_bytes()


def _drop_pending(token: str) -> None:
    (_upload_dir() / f"{token}.json").unlink(missing_ok=True)
    (_upload_dir() / f"{token}.bin").unlink(missing_ok=True)


def _default_name(filename: str) -> str:
    stem = Path(filename).stem.strip() or "名单"
    return f"{stem} {time.strftime('%m-%d %H:%M')}"


@bp.route("/")
@readable
def index() -> Any:
    """All lists of this committee, and the upload form."""
    hidden = hidden_ids("list")
    rows = [r for r in db().scalars(select(ContactList).order_by(ContactList.id.desc()))
            if str(r.id) not in hidden]
    return render_template("lists/index.html", lists=rows, form=UploadForm())


@bp.route("/upload", methods=["POST"])
@roles_required(*WRITE_ROLES)
def upload() -> Any:
    """Read the file and show the preview; a file that cannot be read shows why, saves nothing."""
    form = UploadForm()
    form.validate_on_submit()  # CSRF is checked globally; fields are checked below
    f = request.files.get("file")
    if f is None or not f.filename:
        return _upload_error(form, "请选择要上传的文件。")
    filename = Path(f.filename).name
    if not filename.lower().endswith((".xlsx", ".xlsm", ".csv", ".txt")):
        return _upload_error(form, f"不支持的文件类型：{filename}（请上传 .xlsx 或 .csv）")
    data = f.read()
    try:
        preview = parse_contacts(data, filename)
    except ContactFileError as exc:
        return _upload_error(form, f"无法读取 {filename}：{exc}")
    if not preview.contacts:
        return _upload_error(form, f"{filename} 里没有一行有效的联系人。", preview)
    _cleanup_old()
    token = secrets.token_urlsafe(24)
    _write_private(_upload_dir() / f"{token}.bin", data)  # residents' names and numbers
    meta = {"filename": filename, "user_id": current_user.id,
            "name": (form.name.data or "").strip() or _default_name(filename)}
    _write_private(_upload_dir() / f"{token}.json", json.dumps(meta, ensure_ascii=False).encode())
    return redirect(url_for("lists.preview", token=token))


def _upload_error(form: UploadForm, message: str, preview: ImportPreview | None = None) -> Any:
    hidden = hidden_ids("list")
    rows = [r for r in db().scalars(select(ContactList).order_by(ContactList.id.desc()))
            if str(r.id) not in hidden]
    return render_template("lists/index.html", lists=rows, form=form, upload_error=message,
                           bad_preview=preview), 400


@bp.route("/preview/<token>")
@roles_required(*WRITE_ROLES)
def preview(token: str) -> Any:
    """Mapped columns, the first rows, and every bad, duplicate or blank row, before saving."""
    meta, data = _load_pending(token)
    p = parse_contacts(data, meta["filename"])
    form = ConfirmForm(name=meta["name"])
    return render_template("lists/preview.html", p=p, token=token, form=form,
                           first=p.contacts[:PREVIEW_ROWS], preview_rows=PREVIEW_ROWS)


@bp.route("/preview/<token>/confirm", methods=["POST"])
@roles_required(*WRITE_ROLES)
def confirm(token: str) -> Any:
    """Save the previewed file as a new list."""
    meta, data = _load_pending(token)
    form = ConfirmForm()
    name = (form.name.data or "").strip() or meta["name"]
    p = parse_contacts(data, meta["filename"])
    try:
        lst = save_list(db(), name, p)
    except ContactFileError as exc:
        db().rollback()
        flash(str(exc), "error")
        meta["name"] = name
        return render_template("lists/preview.html", p=p, token=token, form=ConfirmForm(name=name),
                               first=p.contacts[:PREVIEW_ROWS], preview_rows=PREVIEW_ROWS), 400
    claim("list", lst.id)
    record("list_import", f"list:{lst.id} {name}",
           f"imported={len(p.contacts)} errors={len(p.errors)} duplicates={len(p.duplicates)}")
    db().commit()
    _drop_pending(token)
    flash(f"已导入名单“{name}”：{len(p.contacts)} 人；"
          f"{len(p.errors)} 行有错未导入，{len(p.duplicates)} 行重复已合并。", "ok")
    return redirect(url_for("lists.show", list_id=lst.id))


@bp.route("/preview/<token>/discard", methods=["POST"])
@roles_required(*WRITE_ROLES)
def discard(token: str) -> Any:
    """Drop a previewed upload; nothing is kept."""
    _load_pending(token)
    _drop_pending(token)
    flash("已放弃这次上传，没有保存任何内容。", "info")
    return redirect(url_for("lists.index"))


@bp.route("/<int:list_id>")
@readable
def show(list_id: int) -> Any:
    """The contacts of one list (numbers masked), a page at a time."""
    require_visible("list", list_id)
    lst = db().get(ContactList, list_id)
    if lst is None:
        abort(404)
    page = min(max(1, request.args.get("page", 1, type=int)), MAX_PAGE)
    total = db().scalar(select(func.count()).select_from(Contact)
                        .where(Contact.list_id == list_id)) or 0
    contacts = db().scalars(select(Contact).where(Contact.list_id == list_id)
                            .order_by(Contact.row).offset((page - 1) * PAGE_SIZE)
                            .limit(PAGE_SIZE)).all()
    pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    return render_template("lists/show.html", lst=lst, contacts=contacts, page=page, pages=pages,
                           total=total)
