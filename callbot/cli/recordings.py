"""``callbot recordings``: fetch one (``recording:ID`` in an export), purge past the retention,
delete one resident's recordings and transcripts (audited)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from callbot.exceptions import CallbotError


def _open():  # type: ignore[no-untyped-def]
    from callbot.campaign.store import open_db
    from callbot.config import load_settings
    from callbot.recordings import open_store

    settings = load_settings()
    factory = open_db(settings)
    return settings, factory, open_store(settings, factory)


@click.group()
def recordings() -> None:
    """居民的声音：回答录音和整通录音 (reply audio and call recordings)."""


@recordings.command("get")
@click.argument("rec_id", metavar="ID", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="写到这个文件：.ogg 原样，.wav 解码为 8 kHz WAV (write .ogg as stored, or .wav).")
def get_cmd(rec_id: int, output: Path) -> None:
    """取出一段录音 (write recording ID, as an export names it, to a file)."""
    from callbot import recordings as rec
    from callbot.db import session_scope

    try:
        _settings, factory, store = _open()
        with session_scope(factory) as s:
            row = s.get(rec.Recording, rec_id)
            if row is None:
                raise CallbotError(f"没有编号为 {rec_id} 的录音 (no recording {rec_id})")
            key = row.key
        data = store.get(key)
        if output.suffix.lower() == ".wav":
            import wave

            pcm, rate = rec.decode(data)
            with wave.open(str(output), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(pcm)
        else:
            output.write_bytes(data)
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(output))


@recordings.command("purge")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="删除早于这么多天的录音 (default CALLBOT_RECORDING_DAYS, 90).")
def purge_cmd(days: int | None) -> None:
    """立即删除过期录音 (purge now; the dispatcher also does it every hour)."""
    from callbot import recordings as rec

    try:
        settings, factory, store = _open()
        n = rec.purge(factory, store, days=days or settings.recording_days)
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"已删除 {n} 段过期录音 (purged {n})")


@recordings.command("forget")
@click.argument("phone")
@click.option("--yes", is_flag=True, help="不再确认 (do not ask).")
@click.option("--json", "as_json", is_flag=True)
def forget_cmd(phone: str, yes: bool, as_json: bool) -> None:
    """删除一位居民的录音和文字记录（所有活动；写入操作日志）(delete one resident's personal data)."""
    import getpass

    from callbot import recordings as rec
    from callbot.accounts import mask_phone

    if not yes and not click.confirm(f"删除 {phone} 在所有活动中的录音和文字记录？不可恢复", err=True):
        sys.exit(1)
    try:
        _settings, factory, store = _open()
        gone = rec.forget_resident(factory, store, phone, by=f"cli:{getpass.getuser()}")
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"phone": gone.phone, "recordings": gone.recordings,
                               "transcripts": gone.transcripts, "answers": gone.answers}))
    else:
        click.echo(f"已删除 {mask_phone(gone.phone)}：{gone.recordings} 段录音，"
                   f"{gone.transcripts} 次通话的文字记录，{gone.answers} 条居民原话")
