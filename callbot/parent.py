"""Child processes that die with the process that started them.

``callbot worker --lines N`` (N > 4) is a supervisor over line processes and the host's speech
process. Killed with SIGKILL (an OOM kill, ``kill -9``, a bench or test that gave up), it cannot
stop them, and they lived on with PPID 1 holding phones, models and queue reads. A child started
with ``CALLBOT_SUPERVISOR_PID`` in its environment asks the kernel for SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``; elsewhere a thread watches the parent pid) and stops as on any
SIGTERM: no new calls, the calls up end, then it exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

ENV = "CALLBOT_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Get *sig* when the supervisor named by ``CALLBOT_SUPERVISOR_PID`` goes; False when not
    started by one. Call it first thing in the child (the signal's handler may come later: until
    then the default action ends the process)."""
    want = os.environ.get(ENV, "")
    if not want.isdigit():
        return False
    parent = int(want)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(target=_watch, args=(parent, sig), daemon=True,
                         name="parent-watch").start()
    if os.getppid() != parent:  # it died before the kernel was asked
        os.kill(os.getpid(), sig)
    return True


def _watch(parent: int, sig: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("supervisor %s went away: stopping", parent)
    os.kill(os.getpid(), sig)
