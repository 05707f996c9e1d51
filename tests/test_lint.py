"""The code checks the project keeps (docs: STYLE habit 9): ruff over everything (docstrings on
public names, complexity: pyproject.toml) and mypy over the shipped code, the tests, bench/ and the
Python files in scripts/ (bodies of unannotated functions too: check_untyped_defs)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_ruff_finds_nothing() -> None:
    proc = _run("ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_finds_nothing() -> None:
    scripts = sorted(str(p.relative_to(REPO)) for p in (REPO / "scripts").glob("*.py"))
    proc = _run("mypy", "--cache-dir", "/dev/null", "callbot", "web", "tests", "bench", *scripts)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
