from __future__ import annotations

import subprocess

from tests.conftest import callbot_cmd, env_for_subprocess


def test_help_lists_the_commands_a_user_needs() -> None:
    out = subprocess.run(callbot_cmd("--help"), capture_output=True, text=True,
                         env=env_for_subprocess(), check=True).stdout
    for name in ("call", "listen", "simulate", "import", "campaign", "worker", "report", "web"):
        assert name in out
