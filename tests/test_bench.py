"""Every bench script and every Python script in scripts/ starts: ``--help`` prints its usage and
exits 0 (a bench is run by hand, rarely, so an import that rotted would otherwise be found only
then). The bodies are checked by mypy (tests/test_lint.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

SCRIPTS = sorted(p for p in [*(REPO / "bench").glob("*.py"), *(REPO / "scripts").glob("*.py")]
                 if not p.name.startswith("_"))  # scripts/_zhtts.py is a module, not a script


def test_there_are_scripts_to_check() -> None:
    assert len(SCRIPTS) >= 10, SCRIPTS


def test_every_bench_and_script_prints_its_help() -> None:
    # all at once: each is an interpreter start plus its imports (~1 s), the box has 2 CPUs
    procs = {p: subprocess.Popen([sys.executable, str(p), "--help"], cwd=REPO, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for p in SCRIPTS}
    failed = []
    for path, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0 or "usage:" not in out:
            failed.append(f"{path.relative_to(REPO)}: rc {proc.returncode}\n{out[-500:]}{err[-1500:]}")
    assert not failed, "\n".join(failed)
