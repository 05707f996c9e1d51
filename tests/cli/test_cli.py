from __future__ import annotations

import re
import subprocess

from tests.conftest import callbot_cmd, env_for_subprocess


def test_help_lists_the_commands_a_user_needs() -> None:
    out = subprocess.run(callbot_cmd("--help"), capture_output=True, text=True,
                         env=env_for_subprocess(), check=True).stdout
    # the command names in the "Commands:" section, not words anywhere in the text ("call" is
    # in "callbot" in the usage line)
    listed = set(re.findall(r"^  ([a-z-]+)\s", out.split("Commands:", 1)[1], re.M))
    assert {"call", "listen", "simulate", "import", "campaign", "worker", "report", "web"} <= listed
