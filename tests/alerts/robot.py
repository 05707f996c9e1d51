"""A local HTTP server standing in for a 企业微信 / 钉钉 group robot (never the real services).

It answers POSTs as both robots do (``{"errcode": 0, "errmsg": "ok"}``), keeps every message it
took with the time it arrived, and can misbehave: answer 5xx, answer an ``errcode`` ≠ 0, or go
down entirely (the port closed) and come back on the same port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class GroupRobot:
    """``with GroupRobot() as robot: robot.url`` — a webhook on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or _free_tcp_port()
        self.mode = "ok"
        """ok | 5xx | errcode: how the next POSTs are answered."""
        self.received: list[dict[str, Any]] = []
        """Messages taken (answered errcode 0): ``content``, ``at`` (time.time()), ``body``."""
        self.refused = 0
        """POSTs answered with an error (5xx or errcode ≠ 0)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/webhook/send?key=test-key-1234"

    def contents(self) -> list[str]:
        with self._lock:
            return [m["content"] for m in self.received]

    def start(self) -> GroupRobot:
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if robot.mode == "5xx":
                    robot._count_refused()
                    self._reply(502, {"error": "bad gateway"})
                    return
                try:
                    body = json.loads(raw.decode("utf-8"))
                    content = body["text"]["content"]
                    assert body["msgtype"] == "text"
                except (ValueError, KeyError, TypeError, AssertionError):
                    robot._count_refused()
                    self._reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
                    return
                if robot.mode == "errcode":
                    robot._count_refused()
                    self._reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
                    return
                with robot._lock:
                    robot.received.append({"content": content, "at": time.time(), "body": body})
                self._reply(200, {"errcode": 0, "errmsg": "ok"})

            def _reply(self, code: int, obj: dict[str, Any]) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="group-robot")
        self._thread.start()
        return self

    def _count_refused(self) -> None:
        with self._lock:
            self.refused += 1

    def stop(self) -> None:
        """Go down: the port is closed (connections are refused) until :meth:`start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wait_for(self, n: int, timeout: float = 20.0) -> list[str]:
        """Block until *n* messages were taken; their contents."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.contents()
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"group robot got {len(self.contents())} of {n} messages: "
                             f"{self.contents()}")

    def __enter__(self) -> GroupRobot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
