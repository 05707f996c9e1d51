"""``callbot residents``: run the resident simulator (the SIP peer that plays residents)."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import click

from callbot.exceptions import ConfigError

SAMPLE_TABLE = Path(__file__).resolve().parent.parent / "data" / "residents.yaml"


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@click.group()
def residents() -> None:
    """模拟居民 (resident simulator): answer test calls by a persona table."""


@residents.command("serve")
@click.option("--table", "table", type=click.Path(dir_okay=False), default=str(SAMPLE_TABLE),
              show_default="the sample table", help="Persona table (.yaml or .csv).")
@click.option("--port", type=int, default=5070, show_default=True, help="SIP port to listen on.")
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option("--calls", type=int, default=None,
              help="Concurrent calls to serve; starts ceil(calls/4) processes.")
@click.option("--procs", type=int, default=None, help="Backend processes (4 calls each).")
@click.option("--record-dir", type=click.Path(file_okay=False), default=None,
              help="Where recordings and calls.jsonl go (default $CALLBOT_DATA_DIR/residents).")
def serve(table: str, port: int, bind: str, calls: int | None, procs: int | None,
          record_dir: str | None) -> None:
    """Listen on PORT until Ctrl-C. More than 4 concurrent calls → a front on PORT forwards to
    backend processes."""
    from callbot.config import load_settings
    from callbot.residents import Simulator, load_personas

    if procs is None:
        procs = max(1, math.ceil((calls or 4) / 4))
    if procs < 1:
        raise click.UsageError("--procs must be at least 1")
    try:
        tab = load_personas(table)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    rdir = record_dir or str(load_settings().data_dir / "residents")
    sim = Simulator(table, rdir, port=port, procs=procs, bind=bind)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sim.start()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"模拟居民已就绪 (resident simulator ready): sip:NUMBER@{bind}:{port}, "
               f"{len(tab)} personas from {table}, {procs} process(es) = {sim.capacity} calls; "
               f"recordings in {rdir}", err=True)
    log_file = Path(rdir) / "calls.jsonl"
    seen = log_file.stat().st_size if log_file.exists() else 0
    try:
        while True:  # a backend that dies is started again by the simulator (and logged)
            time.sleep(0.5)
            seen = _echo_new_calls(log_file, seen)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


def _echo_new_calls(log_file: Path, offset: int) -> int:
    """Print one line per call the residents finished since ``offset``; returns the new offset."""
    import json

    if not log_file.exists():
        return offset
    with log_file.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8").splitlines():
        c = json.loads(line)
        r = c.get("result") or {}
        click.echo(f"{c['number']} {c['persona']} ({c['behaviour']}): {r.get('outcome')} "
                   f"{r.get('sip_code') or ''}, 听到 {c['prompts_heard']} 段提示 (prompts heard), "
                   f"回答 {len(c['replies_given'])} 次 (replies)"
                   + (f", 按键 {c['dtmf_sent']}" if c["dtmf_sent"] else ""), err=True)
    return offset + end


@residents.command("check")
@click.argument("table", type=click.Path(dir_okay=False))
def check(table: str) -> None:
    """Validate a persona table and list its residents."""
    from callbot.residents import load_personas

    try:
        tab = load_personas(table)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for p in tab.by_number.values():
        extra = f" replies={list(p.replies)}" if p.replies else ""
        barge = [f"{i + 1}@{s:g}s" for i, s in enumerate(p.reply_barge_in_s) if s is not None]
        if barge:
            extra += f" barge_in={barge}"  # which reply talks over its prompt, how far in
        click.echo(f"{p.number}\t{p.name or '-'}\t{p.behaviour}\tring_s={p.ring_s:g}{extra}")
