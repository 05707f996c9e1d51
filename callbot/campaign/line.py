"""Is the robot's SIP peer there? A line worker asks when a call got no answer at all from it.

A call that got no SIP response (no ringing, no status: ``unreachable`` with no code) says
nothing by itself: one number may be unroutable. The worker then sends the peer (outbound
proxy, registrar, or the host the dial pattern points at) an OPTIONS request from a plain
socket, no pjsua2: any SIP response means the line is up and the number is to blame; none means
the line is down. A worker whose line is down takes no jobs, gives the attempt back (it never
reached the resident), says so on its heartbeat row, and probes every few seconds until the peer
answers; the dispatcher pauses campaigns while every live worker's line is down.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from datetime import datetime

from callbot import defaults
from callbot.config import SipConfig
from callbot.telephony.dialplan import to_sip_uri

log = logging.getLogger(__name__)

_HOSTPORT = re.compile(r"sips?:(?:[^@>;]+@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?")


def peer_of(conf: SipConfig) -> tuple[str, int]:
    """Where this line's INVITEs go first: the outbound proxy, else the registrar (mode
    register), else the host of the dial pattern."""
    uri = conf.proxy or (conf.registrar if conf.mode == "register" else None) \
        or to_sip_uri("10086", conf)
    m = _HOSTPORT.search(uri)
    if m is None:
        raise ValueError(f"cannot find a host in {uri!r}")
    port = int(m.group(2) or (5061 if conf.transport == "tls" else 5060))
    return m.group(1).strip("[]"), port


def peer_answers(conf: SipConfig, timeout: float = defaults.LINE_PROBE_TIMEOUT_S) -> str | None:
    """None when the peer answers (any SIP response; TCP/TLS: it accepts a connection), else why
    not, in Chinese for the campaign's pause reason."""
    try:
        host, port = peer_of(conf)
    except ValueError as exc:
        return f"无法确定 SIP 对端地址 ({exc})"
    where = f"{host}:{port}"
    if conf.transport in ("tcp", "tls"):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return None
        except OSError as exc:
            return f"SIP 对端 {where} 连接失败 ({exc.strerror or exc})"
    tag = os.urandom(6).hex()
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
    except OSError as exc:
        return f"SIP 对端 {where} 无法解析 ({exc})"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            me = s.getsockname()
            s.send((f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {me[0]}:{me[1]};rport;branch=z9hG4bK{tag}\r\n"
                    f"From: <sip:{conf.username}@{conf.domain}>;tag={tag}\r\n"
                    f"To: <sip:{host}:{port}>\r\nCall-ID: line-probe-{tag}\r\n"
                    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode())
            end = time.monotonic() + timeout
            while True:
                data = s.recv(65535)
                if data.startswith(b"SIP/2.0 ") and f"line-probe-{tag}".encode() in data:
                    return None
                if time.monotonic() > end:
                    raise TimeoutError
        except ConnectionRefusedError:
            return f"SIP 对端 {where} 拒绝连接（端口未开）"
        except TimeoutError:
            return f"SIP 对端 {where} 无响应（{timeout:g} 秒内没有回应）"
        except OSError as exc:
            return f"SIP 对端 {where} 不可达 ({exc.strerror or exc})"


def no_sip_response(outcome: str, sip_code: int | None) -> bool:
    """A call that got nothing at all from the peer (so the line itself may be down)."""
    return outcome in ("unreachable", "failed") and sip_code in (None, 408, 503)


_PHRASES = {408: "Request Timeout", 500: "Server Internal Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Server Time-out"}
BUSY_PREFIX = "SIP 对端繁忙"
"""How a back-off's reason starts (the dispatcher's pause says 线路繁忙 for it)."""


class LineHealth:
    """One line worker's view of its SIP peer: up, or down since when and why."""

    def __init__(self, conf: SipConfig | None):
        self.conf = conf
        self.down_since: datetime | None = None
        self.reason: str | None = None
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._up_at = 0.0
        """monotonic() when a probe last found the peer (a probe sent before it is stale)."""
        self._busy_until = 0.0
        """monotonic() until which the worker backs off after a trunk-side failure."""
        self._busy_streak = 0
        self._busy_last = 0.0
        self._given_back: dict[str, int] = {}

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def check(self) -> bool:
        """Probe the peer now; True when it answers. Marks the line down or up."""
        if self.conf is None:
            return True
        sent = time.monotonic()
        if sent < self._busy_until:
            return False  # backing off after a trunk-side failure: not yet
        why = peer_answers(self.conf)
        from callbot.campaign.linestore import utcnow

        with self._lock:
            if why is None:
                if self.down_since is not None:
                    log.warning("SIP peer answers again after %s; taking calls",
                                utcnow() - self.down_since)
                self.down_since, self.reason = None, None
                self._up_at = time.monotonic()
            elif sent < self._up_at:
                # another probe, sent after this one, was answered: the peer is back (this one
                # left while it was away) — marking the line down again paused campaigns for
                # a moment right after the peer returned
                return True
            else:
                if self.down_since is None:
                    log.error("line down: %s; taking no calls until it answers", why)
                    self.down_since = utcnow()
                self.reason = why
        self.changed.set()
        return why is None

    def wait_up(self, stop: threading.Event) -> None:
        """Block a line thread while the line is down (the worker's probe thread brings it up)."""
        while self.down and not stop.is_set():
            stop.wait(0.2)

    def back_off(self, sip_code: int) -> str:
        """A call ended on a trunk-side failure: take no calls for a while (doubling while it
        goes on), shown as the line's reason. Returns that reason."""
        from callbot.campaign.linestore import utcnow

        with self._lock:
            now = time.monotonic()
            if now >= self._busy_until:  # failures of calls placed together count once
                if now - self._busy_last > 2 * defaults.LINE_BUSY_BACKOFF_MAX_S:
                    self._busy_streak = 0
                self._busy_streak += 1
                wait = min(defaults.LINE_BUSY_BACKOFF_MAX_S,
                           defaults.LINE_BUSY_BACKOFF_S * 2 ** (self._busy_streak - 1))
                self._busy_until = now + wait
                self.reason = (f"{BUSY_PREFIX}（{sip_code} {_PHRASES.get(sip_code, '')}".rstrip()
                               + f"），{wait:g} 秒内不再外呼")
                if self.down_since is None:
                    self.down_since = utcnow()
                log.error("SIP peer failed a call with %s; no calls for %g s", sip_code, wait)
            self._busy_last = now
            reason = self.reason or BUSY_PREFIX
        self.changed.set()
        return reason

    def never_reached(self, outcome: str, sip_code: int | None, announcement: str | None = None,
                      number: str = "") -> str | None:
        """Why a finished call never reached the resident — the line is down, or the trunk
        failed it (503 and the like, :func:`callbot.telephony.outcome.trunk_failure`) — so the
        attempt goes back instead of using one of her tries; None: it counts. A number whose
        calls the trunk failed TRUNK_GIVE_BACKS_MAX times in a row here counts the next one."""
        from callbot.telephony.outcome import trunk_failure

        if trunk_failure(sip_code, announcement=announcement):
            if sip_code == 408 and not self.check():  # no answer at all: is the peer there?
                return self.reason
            reason = self.back_off(int(sip_code or 0))
            with self._lock:
                n = self._given_back.get(number, 0) + 1
                if n > defaults.TRUNK_GIVE_BACKS_MAX:
                    self._given_back.pop(number, None)
                    return None
                self._given_back[number] = n
            return reason
        with self._lock:
            self._given_back.pop(number, None)
        if no_sip_response(outcome, sip_code) and not self.check():
            return self.reason
        return None

