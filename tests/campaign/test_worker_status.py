"""A line process's status for the web app (calls up, last error) is written when it changes;
the heartbeat writes it again only when it changed or STATUS_REFRESH_S passed (each write is a
request to the host's store process; every heartbeat wrote the same)."""

from __future__ import annotations

from pathlib import Path

from tests.campaign.conftest import make_env


class _Queue:
    def __init__(self) -> None:
        self.said: list[tuple[int, str | None]] = []

    def status(self, worker_id: str, calls: int, error: str | None) -> None:
        self.said.append((calls, error))


def test_the_heartbeat_writes_the_status_only_when_it_changed(tmp_path: Path) -> None:
    from callbot.campaign import worker

    env = make_env(tmp_path, None, None)
    w = worker.LineWorkerProcess(env.settings, 1, lambda *a: None)  # type: ignore[arg-type,return-value]
    q = _Queue()
    w.queue = q  # type: ignore[assignment]
    w._publish()  # started
    for _ in range(3):
        w._publish(if_changed=True)  # heartbeats: nothing new
    assert q.said == [(0, None)]
    w.busy = 1
    w._publish()  # a call taken: always written
    w._publish(if_changed=True)
    w.last_error = "job-1: RuntimeError: boom"
    w._publish(if_changed=True)  # a heartbeat failure is new: written
    assert q.said == [(0, None), (1, None), (1, "job-1: RuntimeError: boom")]
    w._said_at -= worker.STATUS_REFRESH_S + 1
    w._publish(if_changed=True)  # unchanged but old: written again
    assert len(q.said) == 4
