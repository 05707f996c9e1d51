"""``callbot simulate`` (try a script in the terminal) and ``callbot template list|show|validate``."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import click

from callbot.exceptions import TemplateError


def parse_vars(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("姓名=张阿姨", "楼栋=3")`` → a dict; BadParameter on a pair without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"应写成 列名=值，例如 姓名=张阿姨 (expected k=v): {pair!r}",
                                     param_hint="--var")
        out[key.strip()] = value
    return out


def load_template(source: str, columns: list[str] | None = None) -> Any:
    """A template by name or path, validated; a click error naming the line otherwise."""
    from callbot.script import load_script

    try:
        return load_script(source, columns=columns)
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None


def missing_vars(script: Any, variables: dict[str, str]) -> list[str]:
    """The contact columns *script*'s prompts use that *variables* does not give."""
    from callbot.script import ALIASES

    have = set(variables) | {ALIASES.get(k, k) for k in variables} | {
        zh for zh, en in ALIASES.items() if en in variables}
    return [r for r in script.requires if r not in have and ALIASES.get(r) not in have]


@click.command()
@click.argument("template")
@click.option("--var", "variables", multiple=True, metavar="列名=值",
              help="A contact column for the prompts, e.g. --var 姓名=张阿姨 (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Read replies one per line from stdin; print one JSON object at the end.")
@click.option("--duty", type=click.Choice(["answers", "no-answer"]), default="answers",
              show_default=True,
              help="转人工: play the duty phone answering, or not answering (the call-back line).")
def simulate(template: str, variables: tuple[str, ...], as_json: bool, duty: str) -> None:  # noqa: C901
    """试运行话术：在终端里扮演居民回答 (try a script in the terminal).

    TEMPLATE is a built-in name (mask_reservation, welfare_check) or a YAML path. Type a reply,
    `#1` to press key 1, an empty line for silence; end of input hangs up. Alerts and a transfer
    the dialogue would make are shown (and in --json), nothing is sent or dialled.
    """
    from callbot.config import load_settings
    from callbot.dialogue import (
        Alert,
        DialogueEngine,
        HangUp,
        HungUp,
        Listen,
        Record,
        Say,
        Transfer,
        typed_events,
    )
    from callbot.transfer import DryRunTransfer

    script = load_template(template)
    contact = parse_vars(variables)
    missing = missing_vars(script, contact)
    if missing:
        hint = " ".join(f"--var {m}=..." for m in missing)
        raise click.UsageError(f"模板需要这些变量：{', '.join(missing)}；请加 {hint} "
                               f"(the template needs these variables)")
    settings = load_settings()
    committee = settings.committee
    plan = _duty(settings)
    try:
        engine = DialogueEngine(script, contact, committee=committee,
                                can_transfer=bool(plan["to"]))
        actions = engine.start()
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None

    def show(acts: list[Any]) -> None:
        if as_json:
            return
        for act in acts:
            if isinstance(act, Say):
                click.echo(f"机器人: {act.text}")
            elif isinstance(act, Record):
                click.secho(f"  [记录 record] {act.field} = {act.value!r}", fg="green")
            elif isinstance(act, Listen):
                keys = ", ".join(f"{k}={v}" for k, v in act.keymap.items())
                click.secho(f"  (等待回答 waiting: {', '.join(act.intents)}"
                            f"{'; 按键 keys ' + keys if keys else ''})", dim=True)
            elif isinstance(act, HangUp):
                click.secho(f"  [挂断 hang up: {act.reason}]", fg="yellow")
            elif isinstance(act, Alert):
                click.secho(f"  [提醒 alert → 待处理 / 群机器人（试运行不发送）] "
                            f"{'紧急 ' if act.urgent else ''}{act.reason}: {act.said}"
                            f"{'（' + act.detail + '）' if act.detail else ''}", fg="red")
            elif isinstance(act, Transfer):
                click.secho(f"  [转人工 transfer → {plan['to'] or '（未配置值班电话 no duty number）'}"
                            f"，试运行假定{'接通' if duty == 'answers' else '无人接听'}]", fg="cyan")

    after = DryRunTransfer(engine, plan, duty)  # the transfer's outcome as --duty says

    if not as_json:
        click.secho(f"{script.title} ({script.name}) — 输入回答；#1 表示按键1；直接回车表示沉默；"
                    f"Ctrl-D 挂断", bold=True)
    show(actions)
    while engine.ended is None:
        if not as_json:
            click.echo("您> ", nl=False)
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line:
            engine.on(HungUp())
            break
        if not as_json and not sys.stdin.isatty():
            click.echo(line.rstrip("\n"))  # replies piped in: show them as if typed
        for event in typed_events(line.rstrip("\n")):
            show(after(engine.on(event)))
            if engine.ended is not None:
                break
    if as_json:
        click.echo(json.dumps({"template": script.name, "answers": engine.answers,
                               "transcript": engine.transcript, "ended": engine.ended,
                               "alerts": [{"reason": a.reason, "urgent": a.urgent, "said": a.said,
                                           "detail": a.detail} for a in engine.alerts],
                               "transfer": after.transfer}, ensure_ascii=False))
        return
    click.secho(f"结束 ended: {engine.ended}", bold=True)
    fields = ", ".join(f"{k}={v!r}" for k, v in engine.answers.items()) or "（无 none）"
    click.echo(f"记录的字段 answers: {fields}")


def _duty(settings: Any) -> dict[str, Any]:
    """Where a transfer would go: the installation committee's duty phone (from the database when
    there is one), else CALLBOT_DUTY_NUMBER."""
    from sqlalchemy.exc import SQLAlchemyError

    from callbot import defaults
    from callbot.committees import config_for

    to, timeout = settings.extra.get("duty_number") or None, defaults.TRANSFER_TIMEOUT_S
    url = settings.database_url
    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).is_file():
        return {"to": to, "timeout_s": timeout}  # no installation here: make no database
    try:
        from callbot.campaign.store import open_db
        from callbot.db import session_scope

        with session_scope(open_db(settings)) as s:
            cfg = config_for(s, None, settings)
            to, timeout = cfg.duty_number, cfg.transfer_timeout_s
    except (SQLAlchemyError, OSError):
        pass
    return {"to": to, "timeout_s": timeout}


@click.group()
def template() -> None:
    """话术模板：列出、查看、检查 (dialogue templates: list, show, validate)."""


@template.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """List the built-in templates and their result fields."""
    from callbot.script import builtin_names, load_script

    rows: list[dict[str, Any]] = []
    for name in builtin_names():
        s = load_script(name)
        rows.append({"name": s.name, "title": s.title, "description": s.description,
                     "fields": {n: f.describe() for n, f in s.fields.items()}})
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        fields = ", ".join(f"{k}: {v}" for k, v in row["fields"].items())
        click.echo(f"{row['name']:<20} {row['title']}  [{fields}]")


@template.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="The parsed template as JSON.")
def show(source: str, as_json: bool) -> None:
    """Print a template (built-in name or path): its YAML, or with --json its parsed form."""
    script = load_template(source)
    if as_json:
        click.echo(json.dumps(script.describe(), ensure_ascii=False))
    else:
        click.echo(script.source, nl=False)


def _columns_of(path: Path) -> list[str]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True)
        row = next(wb.active.iter_rows(max_row=1, values_only=True), ())
        return [str(c).strip() for c in row if c is not None]
    with path.open(encoding="utf-8-sig", newline="") as f:
        return [c.strip() for c in next(csv.reader(f), [])]


@template.command()
@click.argument("source")
@click.option("--columns", default=None, metavar="列1,列2",
              help="Check the variables against these contact-list columns.")
@click.option("--contacts", "contacts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Check the variables against this contact file's header (CSV/XLSX).")
@click.option("--json", "as_json", is_flag=True)
def validate(source: str, columns: str | None, contacts: Path | None, as_json: bool) -> None:
    """Check a template: YAML, steps, loops, variables, the Jinja2 sandbox. Exit 1 on errors."""
    from callbot.script import load_script

    cols: list[str] | None = None
    if columns is not None:
        cols = [c.strip() for c in columns.replace("，", ",").split(",") if c.strip()]
    if contacts is not None:
        cols = (cols or []) + _columns_of(contacts)
    try:
        script = load_script(source, columns=cols)
    except TemplateError as exc:
        errors = exc.errors
        if as_json:
            click.echo(json.dumps({"ok": False, "errors": [
                {"file": e.file, "line": e.line, "message": e.message} for e in errors]
                or [{"file": source, "line": 0, "message": str(exc)}], "warnings": []},
                ensure_ascii=False))
        else:
            for e in errors or [str(exc)]:
                click.echo(str(e), err=True)
            click.secho(f"✗ 模板无效 (invalid): {len(errors) or 1} 处错误", fg="red", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"ok": True, "name": script.name, "errors": [], "warnings": [
            {"file": w.file, "line": w.line, "message": w.message} for w in script.warnings]},
            ensure_ascii=False))
        return
    for w in script.warnings:
        click.echo(str(w), err=True)
    click.secho(f"✓ 模板有效 (valid): {script.name} — {script.title}", fg="green")
