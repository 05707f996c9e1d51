"""``callbot call NUMBER``: place one real call, optionally play a prompt, print what happened."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import click

from callbot import labels
from callbot.config import SipConfig
from callbot.exceptions import CallbotError, ConfigError


def load_conf(path: str | None) -> SipConfig:
    """sip.conf from --sip-conf, else CALLBOT_SIP_CONF or ./sip.conf; a clear error otherwise."""
    from callbot.config import load_settings, load_sip_conf

    if path is None:
        found = load_settings().sip_conf
        if found is None:
            raise ConfigError("no sip.conf: pass --sip-conf PATH, set CALLBOT_SIP_CONF, or run "
                              "in a directory with sip.conf (see the commented sample)")
        path = str(found)
    return load_sip_conf(path)


@dataclass
class CallPlan:
    """What to do once the call is answered (later options add a dialogue template)."""

    play: Path | None = None
    listen_s: float = 5.0
    record: Path | None = None
    extension: list[tuple[float, str]] = field(default_factory=list)
    """转分机: (seconds after the answer, digits) to send as DTMF before the prompt plays
    (``callbot.telephony.dialplan.extension_plan``)."""


class LiveLog:
    """Readable live lines on stdout (Chinese first, English in brackets); silent with --json."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.monotonic()

    def __call__(self, zh: str, en: str = "") -> None:
        if self.enabled:
            t = time.monotonic() - self.t0
            click.echo(f"[{t:6.2f}s] {zh}" + (f" ({en})" if en else ""))


def drive_call(call: Any, plan: CallPlan, log: Callable[..., None],  # noqa: C901
               listener: Any = None) -> None:
    """Follow the call's events: play the prompt when answered, listen, then hang up.
    *listener* (an ``AnnouncementListener``) hears the early media and the first seconds after
    the answer: a carrier announcement or a voice assistant ends the call."""
    from callbot.telephony import (
        Answered,
        Disconnected,
        Dtmf,
        Frame,
        PlaybackEnded,
        Ringing,
    )
    from callbot.telephony.dialplan import EXTENSION_SETTLE_S

    heard = bytearray()
    hangup_at: float | None = None
    pending = list(plan.extension)
    answered_at: float | None = None
    start_at: float | None = None  # an extension's digits are sent: the prompt may start

    def start() -> None:
        nonlocal hangup_at
        if plan.play is not None:
            log(f"播放 {plan.play.name}", "playing prompt")
            call.play(plan.play)
        else:
            hangup_at = time.monotonic() + plan.listen_s

    try:
        while True:
            now = time.monotonic()
            if hangup_at is not None and now >= hangup_at:
                log("挂断", "robot hangs up")
                call.hangup()
                hangup_at = None
            while answered_at is not None and pending and now - answered_at >= pending[0][0]:
                digits = pending.pop(0)[1]
                log(f"发送分机号 {digits}", "extension sent as DTMF")
                call.send_dtmf(digits)
                if not pending:
                    start_at = now + EXTENSION_SETTLE_S * len(digits) + 0.3
            if start_at is not None and now >= start_at:
                start_at = None
                if not call.done and (listener is None or listener.heard is None):
                    start()
            try:
                ev = call.events.get(timeout=0.02 if pending or start_at else 0.1)
            except queue.Empty:
                continue
            if isinstance(ev, Frame):
                if not ev.early:
                    heard += ev.pcm
                if listener is not None and listener.listening and listener.feed(
                        ev.pcm, ev.early):
                    log(f"听到提示音：{listener.text}", f"announcement: {listener.heard.outcome}")
                    call.hangup()
                    hangup_at = None
            elif isinstance(ev, Ringing):
                log(f"振铃 {ev.code}" + (" 彩铃/提示音" if ev.early_media else ""),
                    "ringing, early media" if ev.early_media else "ringing")
            elif isinstance(ev, Answered):
                log(labels.outcome("answered"), "answered")
                if pending:  # 转分机: the digits first, the prompt after them
                    answered_at = time.monotonic()
                else:
                    start()
            elif isinstance(ev, PlaybackEnded):
                log("播放结束" if ev.completed else "播放中断", "prompt ended" if ev.completed
                    else "prompt stopped")
                hangup_at = time.monotonic() + plan.listen_s
            elif isinstance(ev, Dtmf):
                log(f"按键 {ev.digit}", "DTMF")
            elif isinstance(ev, Disconnected):
                return
    finally:
        if plan.record is not None:
            with wave.open(str(plan.record), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(bytes(call.early_media()) + bytes(heard))


@contextlib.contextmanager
def started_phone(conf: SipConfig) -> Iterator[Any]:
    """A started Phone (one pjsua2 Endpoint) for one test call, stopped afterwards: what both
    kinds of ``callbot call`` dial through (a line worker keeps its own for many calls)."""
    from callbot.telephony import Phone

    phone = Phone(conf)
    phone.start()
    try:
        yield phone
    finally:
        phone.stop()


def play_call(conf: SipConfig, number: str, plan: CallPlan, log: Callable[..., None],
              ring_timeout: float | None = None, extension: str = "") -> Any:
    """``callbot call NUMBER [--play WAV]``: place one call, play/listen/record as *plan* says,
    hang up; returns the CallResult (its outcome decided by any announcement heard).
    *extension* (转123) is sent as DTMF after the answer (sip.conf ``[calls] extension_delay``,
    ``extension_pause``), the prompt plays after it."""
    from callbot import announcements
    from callbot.telephony.dialplan import extension_plan

    if extension:
        plan.extension = extension_plan(extension, conf.extension_delay_s, conf.extension_pause_s)
    listener = announcements.PendingListener()  # the pinyin engine loads while we dial
    with started_phone(conf) as phone:
        call = phone.dial(number, ring_timeout=ring_timeout, early_frames=True)
        log(f"拨号 {number} → {call.uri}" + (f"，分机 {extension}" if extension else ""),
            "dialing")
        try:
            drive_call(call, plan, log, listener)
        except KeyboardInterrupt:
            log("中断，挂断", "interrupted, hanging up")
            call.hangup()
        result = call.wait(10)
        announcements.apply(listener, result)  # type: ignore[arg-type]
        return result


@click.command()
@click.argument("number")
@click.option("--play", "play", type=click.Path(exists=True, dir_okay=False),
              help="WAV prompt to play when the call is answered.")
@click.option("--sip-conf", "sip_conf", type=click.Path(dir_okay=False),
              help="sip.conf to use (default: CALLBOT_SIP_CONF or ./sip.conf).")
@click.option("--ring-timeout", "ring_timeout", type=click.FloatRange(min=1.0),
              help="Seconds of ringing before we give up (default: sip.conf).")
@click.option("--listen", "listen_s", type=click.FloatRange(min=0.0), default=5.0,
              show_default=True, help="Seconds to stay on the line after the prompt.")
@click.option("--record", "record", type=click.Path(dir_okay=False),
              help="Save what we heard (early media + the call) to this WAV; with --template the "
                   "whole call, both sides mixed.")
@click.option("--replies", "replies_dir", type=click.Path(file_okay=False), default=None,
              help="With --template: save each reply's audio (detected start to end of speech) "
                   "as a WAV in this directory; --json lists them under replies.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object with the result (and nothing else).")
@click.option("--template", "template", default=None, metavar="NAME|PATH",
              help="Run a dialogue template (built-in name or YAML file) on the call; --json "
                   "then also prints answers, transcript and ended.")
@click.option("--var", "variables", multiple=True, metavar="列名=值",
              help="A contact column for the template's prompts, e.g. --var 姓名=张阿姨.")
def call(number: str, play: str | None, sip_conf: str | None, ring_timeout: float | None,
         listen_s: float, record: str | None, as_json: bool, template: str | None = None,
         variables: tuple[str, ...] = (), replies_dir: str | None = None) -> None:
    """拨打一个电话 (place one call). NUMBER is a phone number (through the dial pattern in
    sip.conf) or a SIP URI such as sip:100@127.0.0.1:5070; an extension after it (02161234567转123,
    分机123, ext 123, x123, #123, -123, ,,123 — a SIP URI: 转123 or ,123) is sent as DTMF after the
    answer, as on a campaign call."""
    from callbot.telephony.dialplan import split_extension

    number, extension = split_extension(number)
    if template is not None:  # a scripted call: callbot.session.run_call
        if play:
            raise click.UsageError("--template 不能和 --play 一起用")
        run_template_call(number, template, variables, sip_conf, ring_timeout, as_json,
                          record=Path(record) if record else None,
                          replies_dir=Path(replies_dir) if replies_dir else None,
                          extension=extension)
        _leave()
    if variables:
        raise click.UsageError("--var 只在 --template 时有用 (--var needs --template)")
    if replies_dir:
        raise click.UsageError("--replies 只在 --template 时有用 (--replies needs --template)")
    log = LiveLog(not as_json)
    plan = CallPlan(play=Path(play) if play else None, listen_s=listen_s,
                    record=Path(record) if record else None)
    try:
        conf = load_conf(sip_conf)
        result = play_call(conf, number, plan, log, ring_timeout, extension)
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False))
        _leave()
    who = {"robot": "机器人挂断 (robot hung up)", "callee": "对方挂断 (callee hung up)"}.get(
        result.hangup_by or "", "")
    click.echo(f"结果 (result): {labels.outcome(result.outcome)} "
               f"[{result.outcome}] SIP {result.sip_code or '-'} {result.reason}")
    click.echo(f"振铃 {result.ring_s:.1f} s, 通话 {result.talk_s:.1f} s"
               + (f", {who}" if who else "") + (f", 按键 {result.dtmf}" if result.dtmf else ""))
    _leave()


def _leave() -> NoReturn:
    """End a finished test call's process at once, exit status 0. The pjsua2 library is destroyed
    by then, but the interpreter's own shutdown still tore down wrapped objects after it and
    crashed the process now and then (SIGSEGV after the result was printed: a script saw exit
    -11 for a call that went fine). Nothing is left to clean up: the output is flushed here."""
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def run_template_call(number: str, template_ref: str, variables: tuple[str, ...],
                      sip_conf: str | None, ring_timeout: float | None, as_json: bool, *,
                      record: Path | None = None, replies_dir: Path | None = None,
                      extension: str = "") -> None:
    """``callbot call NUMBER --template T --var k=v``: one scripted call over SIP with TTS and ASR;
    *record* keeps the whole call (both sides), *replies_dir* each reply's audio as a WAV;
    *extension* (转123) is sent as DTMF after the answer, the dialogue starts after it."""
    from callbot.cli.script import load_template, missing_vars, parse_vars
    from callbot.config import load_settings

    log = LiveLog(not as_json)
    script = load_template(template_ref)
    contact = parse_vars(variables)
    missing = missing_vars(script, contact)
    if missing:
        raise click.UsageError(f"模板需要这些变量：{', '.join(missing)}；请加 "
                               + " ".join(f"--var {m}=..." for m in missing))
    if record is not None and not record.parent.is_dir():
        raise click.UsageError(f"--record: 目录不存在 (no such directory): {record.parent}")
    if replies_dir is not None:
        replies_dir.mkdir(parents=True, exist_ok=True)
    replies: list[dict[str, Any]] = []

    def on_reply(reply: Any) -> None:
        item = {"step": reply.step, "text": reply.text, "start_s": reply.start_s,
                "end_s": reply.end_s, "duration_s": round(reply.duration_s, 3), "file": None}
        if replies_dir is not None and reply.audio:
            path = replies_dir / f"reply-{len(replies) + 1}-{reply.step or 'reply'}.wav"
            _write_wav(path, reply.audio)
            item["file"] = str(path)
        replies.append(item)
        log(f"回答 {reply.text or '（未识别）'} {reply.duration_s:.1f} 秒"
            + (f" → {item['file']}" if item["file"] else ""), "reply heard")

    try:
        from callbot.session import run_call
        from callbot.speech.asr import load_asr
        from callbot.speech.tts import make_tts

        settings = load_settings()
        conf = load_conf(sip_conf)
        tts = make_tts(settings)
        asr = load_asr(settings)
        with started_phone(conf) as phone:
            log(f"{script.title}：先合成全部提示音，再拨号 {number}"
                + (f"，分机 {extension}" if extension else ""), "rendering prompts, then dialing")
            report = run_call(phone, number, script, contact, tts, asr, extension=extension,
                              on_record=lambda f, v: log(f"记录 {f} = {v!r}", "answer recorded"),
                              on_reply=on_reply, record_to=record,
                              committee=settings.committee, ring_timeout=ring_timeout)
    except CallbotError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        out = report.to_json()
        out.update(replies=replies,
                   recording=str(report.recording) if report.recording else None)
        click.echo(json.dumps(out, ensure_ascii=False, default=str))
        return
    if report.recording:
        click.echo(f"整通录音 (whole call, both sides): {report.recording}")
    for line in report.transcript:
        who = "机器人" if line["role"] == "bot" else "居民"
        click.echo(f"  {line['t']:7.2f}s {who}: {line['text']}")
    res = report.result
    click.echo(f"结果 (result): {labels.outcome(res.outcome)} [{res.outcome}] "
               f"SIP {res.sip_code or '-'}; 对话 (dialogue): {report.ended or '-'}")
    fields = ", ".join(f"{k}={v!r}" for k, v in report.answers.items()) or "（无 none）"
    click.echo(f"记录的字段 answers: {fields}")


def _write_wav(path: Path, pcm: bytes) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
