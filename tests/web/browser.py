"""Browser-test plumbing: ``callbot web`` in a subprocess, Debian's Chromium through Playwright,
and screenshots under tests/_artifacts/screenshots/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, callbot_cmd, env_for_subprocess, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = ARTIFACTS / "screenshots"


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def run_cli(env: dict[str, str], *args: str, input: str | None = None) -> str:
    r = subprocess.run(callbot_cmd(*args), env=env, input=input, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"callbot {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


@contextmanager
def served(env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """``callbot web`` (waitress) on a free 127.0.0.1 port; yields the base URL it printed."""
    port = free_port(socket.SOCK_STREAM)
    log = open(log_dir / "web.log", "wb")
    proc = subprocess.Popen(callbot_cmd("web", "--host", "127.0.0.1", "--port", str(port)),
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(port, proc)
        time.sleep(0.2)
        printed = (log_dir / "web.log").read_text("utf-8", "replace")
        assert f"http://127.0.0.1:{port}/" in printed, printed
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, dialogs: list[str]) -> Any:
    """A page in a fresh context (own cookies) that records every JS dialog it sees."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN",
                              accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(20_000)

    def on_dialog(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", on_dialog)
    return page


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, base: str, name: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def web_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data_dir), **extra)
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    return env


def wait_log(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text("utf-8", "replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{path.read_text('utf-8', 'replace')}")
        time.sleep(0.2)
    raise TimeoutError(f"{needle!r} never appeared in {path}:\n{path.read_text('utf-8', 'replace')}")


@contextmanager
def background(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``callbot ARGS`` in its own process group, output to *log*; stopped on exit."""
    f = open(log, "wb")
    proc = subprocess.Popen(callbot_cmd(*args), env=env, stdout=f, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)
        f.close()
