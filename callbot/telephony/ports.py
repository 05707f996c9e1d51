"""Audio ports and the other pjsua2 objects a call leaves behind: when they may be freed.

The conference bridge removes ports asynchronously; a port freed before the media clock let go of
it crashes the process. So frame ports are pooled (reused, never freed while the library runs) and
everything else waits :data:`GRAVE_S` in a graveyard. Loop thread only.
"""

from __future__ import annotations

import collections
import time
from typing import Any

GRAVE_S = 1.0
"""How long released pjsua2 ports, players and recorders are kept before they are freed, s."""


class PortPool:
    """Frame ports (``_pj.FramePort``): the call's audio is transmitted into one and handed to its
    Call. Ports are reused, never freed while the library runs (freeing one corrupts the
    conference bridge now and then); a released port cools for GRAVE_S before reuse."""

    def __init__(self, pjmod: Any, fmt: Any):
        self.m = pjmod
        self.fmt = fmt
        self._free: list[Any] = []
        self._all: list[Any] = []
        self._cooling: collections.deque[tuple[float, Any]] = collections.deque()

    def take(self, handle: Any) -> Any:
        """A port delivering frames to *handle*: a pooled one, else a new one."""
        if self._free:
            port = self._free.pop()
        else:
            port = self.m.FramePort(None)
            port.createPort(f"rx{len(self._all)}", self.fmt)
            self._all.append(port)
        port.handle = handle
        return port

    def cool(self, port: Any, now: float) -> None:
        """A released port goes back to the pool GRAVE_S from *now*."""
        self._cooling.append((now + GRAVE_S, port))

    def refill(self, now: float) -> None:
        while self._cooling and self._cooling[0][0] <= now:
            self._free.append(self._cooling.popleft()[1])

    def disown(self) -> None:
        """At shutdown: hand every port to C++ and forget them; the library's shutdown takes the
        bridge down with them."""
        for port in self._all:
            port.handle = None
            port.__disown__()
        self._all.clear()
        self._free.clear()
        self._cooling.clear()


class Graveyard:
    """Released pjsua2 objects (calls, players, recorders, ports) until they may be dropped."""

    def __init__(self, pjmod: Any, ports: PortPool):
        self.m = pjmod
        self.pj = pjmod.pj
        self.ports = ports
        self.dead: list[Any] = []
        self._waiting: collections.deque[tuple[float, Any]] = collections.deque()

    def add(self, *objs: Any) -> None:
        self.dead.extend(x for x in objs if x is not None)

    @property
    def pending(self) -> bool:
        return bool(self.dead or self._waiting)

    def bury(self) -> None:
        """Drop what has waited long enough (loop thread, outside any callback)."""
        now = time.monotonic()
        later: list[Any] = []
        for obj in self.dead:
            if isinstance(obj, self.m.PjCall):
                # pjsua2 deletes a Call by hanging up (and deafening) whatever call holds its
                # slot id then: once pjsua gave an ended call's slot to a new call, its object
                # must wait until that slot is free again
                if obj.isActive():
                    later.append(obj)
                continue  # otherwise it goes now (a disconnected Call may be deleted)
            if isinstance(obj, self.m.FramePort):
                self.ports.cool(obj, now)
                continue
            # a recorder writes its WAV header when freed: keep its wait short
            delay = GRAVE_S / 4 if isinstance(obj, self.pj.AudioMediaRecorder) else GRAVE_S
            self._waiting.append((now + delay, obj))
        self.dead = later
        if self._waiting:
            self._waiting = collections.deque(x for x in self._waiting if x[0] > now)
        self.ports.refill(now)

    def clear(self) -> None:
        self.dead.clear()
        self._waiting.clear()
