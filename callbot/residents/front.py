"""The simulator's SIP front: a stateless forwarder (no pjsua2) that spreads new INVITEs over the
backend processes; backends answer with their own Contact, so in-dialog requests and RTP go to
them directly."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from typing import Any

from callbot.residents.backend import CALLS_PER_BACKEND

REFUSED_AFTER_S = 3.0
"""An INVITE sent to a backend that has not become one of its calls after this long was refused
by its pjsua2 (all PJSUA_MAX_CALLS taken, some by ended calls still sending a BYE): it no longer
counts as a call of that backend."""

_HDR = re.compile(rb"^(via|v|call-id|i|cseq)\s*:\s*(.*)$", re.IGNORECASE)


class Front:
    """Forwards each new INVITE to the least-loaded backend (by Call-ID, so CANCEL and the ACK of a
    failure follow it); strips its Via from responses. In-dialog requests bypass it."""

    def __init__(self, sock: socket.socket, backends: list[tuple[str, int]], finished: Any,
                 alive: Any = None, taken: Any = None, lingering: Any = None):
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.backends = backends
        self.finished = finished
        """Calls each backend has finished (shared memory, written by the backends)."""
        self.sent = [0] * len(backends)
        """New INVITEs sent to each backend: sent - finished = its live calls."""
        self.taken = taken
        """Calls each backend took (shared memory): sent - taken are INVITEs on their way, or
        refused by the backend's pjsua2."""
        self.lingering = lingering
        """Ended calls each backend's pjsua2 still holds (a BYE to a caller that died): they
        take call slots the backend's own count no longer shows."""
        self.last_sent = [0.0] * len(backends)
        self.alive = alive or (lambda i: True)
        """alive(i): False once backend i's process has died (it gets no more calls)."""
        self.route: dict[bytes, tuple[int, float]] = {}
        self.origin: dict[bytes, tuple[str, int]] = {}

    def _pick(self) -> int | None:
        best, best_load = None, CALLS_PER_BACKEND
        now = time.monotonic()
        for i in range(len(self.backends)):
            if self.taken is not None and self.sent[i] > self.taken[i] \
                    and now - self.last_sent[i] > REFUSED_AFTER_S:
                self.sent[i] = self.taken[i]  # refused INVITEs: never calls of that backend
            load = self.sent[i] - self.finished[i]
            if self.lingering is not None:
                load += self.lingering[i]
            if load < best_load and self.alive(i):
                best, best_load = i, load
        return best

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        head, sep, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        if not lines or not lines[0]:
            return
        call_id = b""
        via_idx = -1
        for i, line in enumerate(lines[1:], 1):
            m = _HDR.match(line)
            if not m:
                continue
            name = m.group(1).lower()
            if name in (b"call-id", b"i"):
                call_id = m.group(2).strip()
            elif name in (b"via", b"v") and via_idx < 0:
                via_idx = i
        if lines[0].startswith(b"SIP/2.0"):
            self._response(lines, via_idx, sep, body)
        else:
            self._request(lines, via_idx, call_id, sep, body, addr)

    def _request(self, lines: list[bytes], via_idx: int, call_id: bytes, sep: bytes, body: bytes,
                 addr: tuple[str, int]) -> None:
        method = lines[0].split(b" ", 1)[0]
        if via_idx < 0 or not call_id:
            return
        target = self.route.get(call_id)
        if target is None:
            if method != b"INVITE":
                if method != b"ACK":
                    self._reply(lines, 481 if method != b"OPTIONS" else 200, addr)
                return
            idx = self._pick()
            if idx is None:
                self._reply(lines, 503, addr, b"Retry-After: 1\r\n")
                return
            self.sent[idx] += 1
            self.last_sent[idx] = time.monotonic()
            self.route[call_id] = (idx, time.monotonic())
        else:
            idx = target[0]
        top = lines[via_idx]
        m = re.search(rb"branch=([^;,\s]+)", top)
        branch = b"z9hG4bK" + hashlib.md5((m.group(1) if m else top) + call_id
                                          ).hexdigest()[:20].encode()
        self.origin[branch] = addr
        via = f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=".encode() + branch
        out = [lines[0], via, *lines[1:]]
        self.sock.sendto(b"\r\n".join(out) + sep + body, self.backends[idx])

    def _response(self, lines: list[bytes], via_idx: int, sep: bytes, body: bytes) -> None:
        if via_idx < 0:
            return
        m = re.search(rb"branch=([^;,\s]+)", lines[via_idx])
        addr = self.origin.get(m.group(1)) if m else None
        if addr is None:
            return
        del lines[via_idx]
        self.sock.sendto(b"\r\n".join(lines) + sep + body, addr)

    def _reply(self, lines: list[bytes], code: int, addr: tuple[str, int],
               extra: bytes = b"") -> None:
        reason = {200: b"OK", 481: b"Call/Transaction Does Not Exist",
                  503: b"Service Unavailable (all simulated residents busy)"}[code]
        keep = []
        for ln in lines[1:]:
            if re.match(rb"^(to|t)\s*:", ln, re.IGNORECASE) and b"tag=" not in ln:
                ln += b";tag=simfront"
            if re.match(rb"^(via|v|from|f|to|t|call-id|i|cseq)\s*:", ln, re.IGNORECASE):
                keep.append(ln)
        msg = b"SIP/2.0 %d %s\r\n" % (code, reason) + b"\r\n".join(keep) + b"\r\n" + extra
        self.sock.sendto(msg + b"Content-Length: 0\r\n\r\n", addr)

    def expire(self, max_age: float = 300.0) -> None:
        now = time.monotonic()
        self.route = {k: v for k, v in self.route.items() if now - v[1] < max_age}
        if len(self.origin) > 10000:
            self.origin = dict(list(self.origin.items())[-5000:])
