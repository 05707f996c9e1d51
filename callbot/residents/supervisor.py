"""The whole simulator: N backend processes (and a front when N > 1), restarted when one dies;
and the call log (``calls.jsonl``) they write."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callbot.residents.backend import CALLS_PER_BACKEND, serve_backend
from callbot.residents.front import Front
from callbot.residents.personas import load_personas

log = logging.getLogger("callbot.residents")

@dataclass
class Simulator:
    """N backend processes (and a front when N > 1). ``start()`` returns once all listen."""

    table_path: str
    record_dir: str
    port: int = 5070
    procs: int = 1
    bind: str = "127.0.0.1"
    log_level: int = 0
    restarts: int = 0
    """Backends that died and were started again (a crash is logged with its stack)."""
    _children: list[Any] = field(default_factory=list)
    _front: Front | None = None
    _front_thread: threading.Thread | None = None
    _watch_thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    backend_ports: list[int] = field(default_factory=list)

    @property
    def capacity(self) -> int:
        return self.procs * CALLS_PER_BACKEND

    def start(self, timeout: float = 30.0) -> None:
        load_personas(self.table_path)  # fail early with a clear error
        sock = None
        if self.procs > 1:
            # The front's port is bound before any backend starts: a backend binds an ephemeral
            # port, which could otherwise be the very port the front is about to take.
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            try:
                sock.bind((self.bind, self.port))
            except OSError as exc:
                sock.close()
                raise RuntimeError(f"居民模拟器端口被占用 (cannot bind {self.bind}:{self.port}: "
                                   f"{exc})") from None
        ctx = self._ctx = mp.get_context("spawn")
        self._ports = ctx.Array("i", self.procs)
        self._finished = ctx.Array("i", self.procs, lock=False)
        self._taken = ctx.Array("i", self.procs, lock=False)
        self._lingering = ctx.Array("i", self.procs, lock=False)
        for i in range(self.procs):
            self._children.append(self._spawn(i))
        deadline = time.monotonic() + timeout
        while any(self._ports[i] == 0 for i in range(self.procs)):
            if time.monotonic() > deadline or any(not p.is_alive() for p in self._children):
                if sock is not None:
                    sock.close()
                self.stop()
                raise RuntimeError("居民模拟器启动失败 (resident simulator did not start; is port "
                                   f"{self.port} free?)")
            time.sleep(0.05)
        self.backend_ports = [self._ports[i] for i in range(self.procs)]
        if sock is not None:
            front = self._front = Front(sock, [(self.bind, p) for p in self.backend_ports],
                                        self._finished, alive=self._backend_alive,
                                        taken=self._taken, lingering=self._lingering)
            self._front_thread = threading.Thread(target=self._run_front, args=(front,),
                                                  daemon=True, name="resident-front")
            self._front_thread.start()
        self._watch_thread = threading.Thread(target=self._watch, daemon=True,
                                              name="resident-watch")
        self._watch_thread.start()

    def _spawn(self, i: int) -> Any:
        p = self._ctx.Process(target=serve_backend, name=f"resident-{i}", daemon=True, args=(
            i, self.table_path, self.record_dir, self._ports, self._finished, self.bind,
            self.port if self.procs == 1 else 0, self.log_level, self._taken, self._lingering))
        p.start()
        return p

    def _watch(self) -> None:
        """Start a backend again when it died, so a long run survives a crash."""
        while not self._stop.wait(0.5):
            for i, p in enumerate(list(self._children)):
                if p.is_alive() or self._stop.is_set():
                    continue
                log.error("resident backend %d died (exit code %s); starting it again", i,
                          p.exitcode)
                self._ports[i] = 0
                self._children[i] = self._spawn(i)
                self.restarts += 1
                deadline = time.monotonic() + 20
                while self._ports[i] == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.backend_ports[i] = self._ports[i]
                if self._front is not None:
                    self._front.backends[i] = (self.bind, self._ports[i])
                    self._front.sent[i] = self._finished[i]
                    self._taken[i], self._lingering[i] = self._finished[i], 0

    def _run_front(self, front: Front) -> None:
        last = time.monotonic()
        with front.sock:
            while not self._stop.is_set():
                r, _, _ = select.select([front.sock], [], [], 0.2)
                if r:
                    try:
                        data, addr = front.sock.recvfrom(65535)
                    except OSError:  # ICMP port unreachable from an earlier send: keep serving
                        continue
                    try:
                        front.handle(data, addr)
                    except Exception:  # noqa: BLE001 - a malformed datagram is dropped
                        log.exception("front: bad datagram from %s", addr)
                if time.monotonic() - last > 30:
                    front.expire()
                    last = time.monotonic()

    def _backend_alive(self, i: int) -> bool:
        return bool(self._children[i].is_alive() and self._ports[i])

    def alive(self) -> bool:
        """True while every backend process runs."""
        return bool(self._children) and all(p.is_alive() for p in self._children)

    def stop(self) -> None:
        self._stop.set()
        if self._watch_thread is not None:
            self._watch_thread.join(25)
        for p in self._children:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        for p in self._children:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(2)
        self._children.clear()
        if self._front_thread is not None:
            self._front_thread.join(2)

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_call_log(record_dir: str | os.PathLike[str], wait_for: Any = None,
                  timeout: float = 5.0) -> list[dict[str, Any]]:
    """What the simulator logged per call (``calls.jsonl``), oldest first.

    A resident logs its call just after the caller saw it end (its recording must be finished
    first), so pass ``wait_for`` — a number of calls, or the numbers that must each appear — to
    wait up to ``timeout`` seconds for them."""
    p = Path(record_dir) / "calls.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        rows = ([json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]
                if p.exists() else [])
        if wait_for is None:
            return rows
        if isinstance(wait_for, int):
            done = len(rows) >= wait_for
        else:
            seen = {r["number"] for r in rows}
            done = all(str(n) in seen for n in wait_for)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def iter_call_log(record_dir: str | os.PathLike[str], number: str) -> Iterator[dict[str, Any]]:
    """The simulator's call log entries for one number."""
    return (c for c in read_call_log(record_dir) if c["number"] == number)
