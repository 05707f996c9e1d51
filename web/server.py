"""Serving the app with waitress: in the foreground (``callbot web``) or in a background thread
(for ``callbot demo`` and tests)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from callbot.exceptions import MissingExtraError


@dataclass
class RunningServer:
    """A waitress server started by :func:`start_server`."""

    url: str
    server: Any
    thread: threading.Thread
    demo_logins: bool = False
    """``callbot demo`` made its published-password logins for this app (its own data dir)."""

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


def _create(app: Any, host: str, port: int, threads: int) -> Any:
    try:
        from waitress.server import create_server
    except ImportError as exc:
        raise MissingExtraError("waitress", "web") from exc
    return create_server(app, host=host, port=port, threads=threads, ident="callbot")


def url_of(server: Any, host: str) -> str:
    """The address to open for a server listening on *host*."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{server.effective_port}/"


def start_server(app: Any, host: str = "127.0.0.1", port: int = 8000,
                 threads: int = 8) -> RunningServer:
    """Listen now (port 0 = any free port) and serve from a daemon thread."""
    server = _create(app, host, port, threads)
    t = threading.Thread(target=server.run, name="callbot-web", daemon=True)
    t.start()
    return RunningServer(url_of(server, host), server, t)


def serve_forever(app: Any, host: str, port: int, threads: int, on_ready: Any = None) -> None:
    """Listen and serve in this thread until interrupted; *on_ready(url)* once listening."""
    server = _create(app, host, port, threads)
    if on_ready is not None:
        on_ready(url_of(server, host))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
