"""The ``callbot`` command. Subcommands live in sibling modules and are imported only when used,
so ``callbot web`` never imports pjsua2 and ``callbot --help`` is instant."""

from __future__ import annotations

import importlib
import logging
import os

import click

# command name -> "module:attribute"
_COMMANDS: dict[str, str] = {
    "call": "callbot.cli.call:call",
    "residents": "callbot.cli.residents:residents",
    "listen": "callbot.cli.speech:listen",
    "models": "callbot.cli.speech:models",
    "tts": "callbot.cli.speech:tts",
    "simulate": "callbot.cli.script:simulate",
    "template": "callbot.cli.script:template",
    "import": "callbot.cli.campaign:import_cmd",
    "campaign": "callbot.cli.campaign:campaign",
    "worker": "callbot.cli.campaign:worker",
    "dispatcher": "callbot.cli.campaign:dispatcher",
    "report": "callbot.cli.campaign:report",
    "db": "callbot.cli.campaign:db",
    "demo": "callbot.cli.demo:demo",
    "web": "callbot.cli.web:web",
    "users": "callbot.cli.web:users",
    "recordings": "callbot.cli.recordings:recordings",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = _COMMANDS.get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            why = str(exc)  # `exc` is unbound once the except block ends

            @click.command(name=name, help=f"(unavailable: {why})")
            def unavailable() -> None:
                raise click.ClickException(f"'{name}' is unavailable: {why}")
            return unavailable


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="callbot")
def main(verbose: int) -> None:
    """callbot — 居委会外呼机器人 (outbound calling robot for residential committees)."""
    level = logging.WARNING - 10 * verbose if verbose else getattr(
        logging, os.environ.get("CALLBOT_LOG_LEVEL", "WARNING").upper(), logging.WARNING
    )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
