"""Line workers: processes that each own one phone (one pjsua2 Endpoint) and run ≤ 4 lines.

RQ's default Worker forks a child per job, which pjsua2 forbids once an Endpoint exists, and runs
one job at a time. Here each line is a thread taking one job at a time off the RQ queue (BLPOP on
the queue key, job loaded by id, run in-process, like RQ's SimpleWorker), and ``--lines N`` starts
``ceil(N / 4)`` such processes by ``exec`` (never ``fork``) from a supervisor that owns no Endpoint.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from callbot import defaults
from callbot.campaign.jobs import CallRunner, LineContext, set_line_context
from callbot.campaign.linestore import STATUS_PREFIX, STATUS_TTL_S  # noqa: F401 - web.admin reads it
from callbot.campaign.store import redis_connection
from callbot.config import Settings, load_settings
from callbot.exceptions import CallbotError, CampaignError

log = logging.getLogger(__name__)

DEFAULT_RUNNER = "callbot.campaign.runner:session_runner"
"""Factory ``(settings, lines) -> CallRunner`` used unless ``--runner`` / CALLBOT_CALL_RUNNER."""
STATUS_REFRESH_S = 60.0
"""Longest a line process leaves its unchanged status (calls up, last error) unwritten (s)."""

RunnerFactory = Callable[[Settings, int], CallRunner]


def load_runner_factory(spec: str) -> RunnerFactory:
    """The call-runner factory named ``module:function`` (``--runner``)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise CampaignError(f"runner 应写成 module:function：{spec!r}")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def lines_per_process(settings: Settings) -> int:
    """Lines one process runs: its 4 call slots less those kept free for the duty-phone leg of
    a 转人工 (``CALLBOT_TRANSFER_SPARE_LEGS``, default 1: 3 lines and one transfer at a time;
    2: 2 lines that may both transfer; 0: 4 lines, a transfer only when a slot happens to be
    free)."""
    raw = settings.extra.get("transfer_spare_legs")
    try:
        spare = defaults.TRANSFER_SPARE_LEGS if raw in (None, "") else int(str(raw))
    except ValueError:
        spare = -1
    if not 0 <= spare < defaults.CALLS_PER_PROCESS:
        raise CampaignError(f"CALLBOT_TRANSFER_SPARE_LEGS 须是 0 到 {defaults.CALLS_PER_PROCESS - 1} "
                            f"的整数，不是 {raw!r} (spare call slots per process)")
    return defaults.CALLS_PER_PROCESS - spare


SCHEMA_ENV = "CALLBOT_SCHEMA_CURRENT"
"""Set by the supervisor for its line processes once it upgraded their database (a digest of
the database URL): each would otherwise import Alembic and every migration (~13 MB a process)
only to find the schema current."""


def _schema_digest(url: str) -> str:
    import hashlib

    return hashlib.sha256(url.encode()).hexdigest()[:16]


def schema_current(settings: Settings) -> bool:
    """Whether this process's supervisor upgraded *settings*' database already."""
    return os.environ.get(SCHEMA_ENV) == _schema_digest(settings.database_url)


def _upgrade_for_children(env: dict[str, str]) -> None:
    """Upgrade the line processes' database once, in a short-lived ``callbot db upgrade`` (the
    supervisor stays small too), and tell them so (SCHEMA_ENV). When it fails (the database is
    away) each line process upgrades it itself as it starts, as before."""
    try:
        url = load_settings(env).database_url
        done = subprocess.run([sys.executable, "-m", "callbot", "db", "upgrade"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=defaults.SCHEMA_UPGRADE_TIMEOUT_S)
    except (CallbotError, OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not upgrade the database before starting the line processes (%s); "
                    "each upgrades it as it starts", exc)
        return
    if done.returncode != 0:
        log.warning("`callbot db upgrade` exited with %s before starting the line processes; each "
                    "upgrades the database as it starts: %s", done.returncode,
                    done.stderr.decode(errors="replace").strip()[-2000:])
        return
    env[SCHEMA_ENV] = _schema_digest(url)


def heartbeat_s(settings: Settings) -> float:
    """Seconds between a line worker's heartbeats."""
    return float(settings.extra.get("heartbeat_s", defaults.WORKER_HEARTBEAT_S))


class LineWorkerProcess:
    """One process: one runner (phone), *lines* threads, a heartbeat in SQL."""

    def __init__(self, settings: Settings, lines: int, runner_factory: RunnerFactory,
                 queue_name: str = defaults.CALL_QUEUE, runner: CallRunner | None = None):
        per = lines_per_process(settings)
        if not 1 <= lines <= per:
            raise CampaignError(f"一个进程最多 {per} 条线路（{defaults.CALLS_PER_PROCESS} 路通话，留 "
                                f"{defaults.CALLS_PER_PROCESS - per} 路给转人工）(lines per process)")
        self.settings = settings
        self.lines = lines
        self.runner_factory = runner_factory
        self.queue_name = queue_name
        self.stop = threading.Event()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.busy = 0
        self._said: tuple[int, str | None] | None = None
        self._said_at = 0.0
        self.declared_dead = False
        self.runner = runner
        """Kept across a restart after being declared dead (the phone stays up)."""
        self._busy_lock = threading.Lock()
        from callbot.campaign.line import LineHealth

        self.line = LineHealth(None)
        self.last_error: str | None = None
        """The last job or heartbeat failure, shown on the web app's line-worker page."""
        self.queue: Any = None
        """This process's call queue (``linestore.RedisQueue`` or ``RpcQueue``)."""
        self.writes: Any = None
        """This process's ``linestore.LineStore`` (set by :meth:`run`)."""

    def run(self) -> None:
        from callbot.campaign.linestore import RedisQueue, RpcQueue, open_line_store

        retry_s = float(self.settings.extra.get("db_retry_s") or defaults.DB_RETRY_S)
        factory: Any = None
        audio: Any = None
        ls = open_line_store(self.settings, db_retry_s=retry_s)
        if ls is None:  # no store process (a lone worker): this process writes itself
            from callbot.campaign.jobs import InProcessStore
            from callbot.campaign.store import open_db
            from callbot.recordings import open_store

            factory = open_db(self.settings, migrate=not schema_current(self.settings))
            audio = open_store(self.settings, factory)
            ls = InProcessStore(factory, audio, db_retry_s=retry_s)
            self.queue = RedisQueue(redis_connection(self.settings), self.queue_name)
        else:  # the store process reads the queue too: no redis-py, no RQ here
            self.queue = RpcQueue(ls, self.queue_name)
        self.writes = ls
        queue = self.queue
        if self.runner is None:  # phone + models first: the heartbeat starts with the lines
            try:
                self.runner = self.runner_factory(self.settings, self.lines)
            except CallbotError as exc:
                err = StartupError(f"线路工作进程无法启动 (line worker cannot start): {exc}")
                report_startup_failure(redis_connection(self.settings), str(err))
                raise err from exc
        runner = self.runner
        from callbot.campaign.line import LineHealth

        # the SIP peer is asked at once: a worker started while it is away does not announce
        # lines that cannot call (the dispatcher would resume a campaign paused for that)
        self.line = LineHealth(getattr(getattr(runner, "phone", None), "config", None))
        self.line.check()
        ls.worker_started(self.worker_id, socket.gethostname(), os.getpid(), self.lines,
                          self.line.down_since, self.line.reason)
        set_line_context(LineContext(factory=factory, runner=runner, worker_id=self.worker_id,
                                     notify=queue.kick, store=audio, committee=self.settings.committee,
                                     line=self.line, db_retry_s=retry_s, line_store=ls))
        self._publish()
        hb = threading.Thread(target=self._heartbeat, daemon=True, name="heartbeat")
        hb.start()
        threading.Thread(target=self._probe, daemon=True, name="line-probe").start()
        threads = [threading.Thread(target=self._line, name=f"line-{i + 1}")
                   for i in range(self.lines)]
        for t in threads:
            t.start()
        log.warning("line worker %s: %d line(s) on queue %s", self.worker_id, self.lines,
                    self.queue_name)
        try:
            for t in threads:  # no polling: a signal's handler still runs while it waits
                t.join()
        finally:
            self.stop.set()
            try:
                ls.worker_stopped(self.worker_id)
            except Exception:  # noqa: BLE001 - the reconciler stops the row (missing heartbeat)
                log.warning("could not mark line worker %s stopped", self.worker_id,
                            exc_info=True)
            close = getattr(runner, "close", None)
            if close is not None and not self.declared_dead:
                close()
            set_line_context(None)

    def _publish(self, *, if_changed: bool = False) -> None:
        """Calls up and the last error, for the web app (Redis ``callbot:line-worker:<id>``).

        *if_changed* (the heartbeat's): only when they changed since the last write or it is
        older than STATUS_REFRESH_S (each heartbeat wrote it: ~13 of a line process's ~19
        writes a minute said the same, each a request to the store process)."""
        if self.queue is None:
            return
        now = time.monotonic()
        said = (self.busy, self.last_error)
        if if_changed and said == self._said and now - self._said_at < STATUS_REFRESH_S:
            return
        self._said, self._said_at = said, now
        try:
            self.queue.status(self.worker_id, self.busy, self.last_error)
        except Exception:  # noqa: BLE001 - status for people; the heartbeat in SQL is the truth
            log.debug("could not publish line-worker status", exc_info=True)

    def _probe(self) -> None:
        """While the line is down, ask the SIP peer every few seconds; a heartbeat follows at
        once when it answers again."""
        while not self.stop.wait(defaults.LINE_PROBE_INTERVAL_S):
            if self.line.down:
                self.line.check()

    def _heartbeat(self) -> None:
        period = heartbeat_s(self.settings)
        while True:
            self.line.changed.wait(period)
            if self.stop.is_set():
                return
            self.line.changed.clear()
            self._publish(if_changed=True)
            try:
                n = self.writes.heartbeat(self.worker_id, self.line.down_since, self.line.reason)
            except Exception as exc:
                log.exception("heartbeat failed")
                self.last_error = f"心跳失败 (heartbeat failed): {type(exc).__name__}: {exc}"[:500]
                continue
            if n == 0:
                # the reconciler took us for dead and gave our calls to the retry policy:
                # take no more jobs; the supervisor (or the operator) starts a fresh worker
                log.error("line worker %s was declared dead; stopping", self.worker_id)
                self.declared_dead = True
                self.stop.set()

    def _line(self) -> None:
        from callbot.campaign.linestore import job_function

        queue = self.queue
        while not self.stop.is_set():
            self.line.wait_up(self.stop)  # no job while the SIP peer is away
            while not self.writes.ready() and not self.stop.wait(0.5):
                pass  # nor while the host's store process is away (its supervisor restarts it)
            if self.stop.is_set():
                break
            try:
                taken = queue.take(1)
            except Exception:
                # Redis (or the store process) went away, perhaps between the pop and the
                # fetch: the attempt is still queued in SQL and the dispatcher enqueues it
                # again; this line must live on
                log.warning("queue read failed (Redis away?); retrying", exc_info=True)
                time.sleep(1)
                continue
            if taken is None:
                continue
            jid = taken.jid
            with self._busy_lock:
                self.busy += 1
            self._publish()
            try:
                job_function(taken.func)(*taken.args, **taken.kwargs)
            except Exception as exc:
                log.exception("job %s failed", jid)
                self.last_error = f"{jid}: {type(exc).__name__}: {exc}"[:500]
            finally:
                with self._busy_lock:
                    self.busy -= 1
                self._publish()
                try:
                    queue.done(taken)  # results live in SQL; the job hash is transport
                except Exception:
                    log.exception("could not delete job %s", jid)


def run_worker(lines: int, runner: str | None = None, settings: Settings | None = None,
               queue_name: str = defaults.CALL_QUEUE) -> int:
    """``callbot worker --lines N``: one process when N ≤ 4, else a supervisor over
    ``ceil(N / 4)`` child processes that restarts any that dies. Returns an exit code."""
    settings = settings or load_settings()
    runner = runner or os.environ.get("CALLBOT_CALL_RUNNER") or DEFAULT_RUNNER
    if lines < 1:
        raise CampaignError("--lines 须 ≥ 1")
    per = lines_per_process(settings)
    if lines <= per:
        from callbot.parent import die_with_parent

        die_with_parent()  # a supervisor's child: gone with it
        factory = load_runner_factory(runner)
        kept: CallRunner | None = None
        while True:
            proc = LineWorkerProcess(settings, lines, factory, queue_name, runner=kept)
            _on_signals(proc.stop.set)
            try:
                proc.run()
            except StartupError as exc:
                # no model, no sip.conf, the account refused: a restart would fail the same way
                log.error("%s", exc)
                print(f"callbot worker: {exc}", file=sys.stderr, flush=True)
                return defaults.EXIT_CONFIG
            if not proc.declared_dead:
                return 0
            kept = proc.runner  # same phone, fresh worker id and heartbeat
    sizes = [per] * (lines // per) + ([lines % per] if lines % per else [])
    return _supervise(sizes, runner, queue_name, settings)


FAILURES_KEY = "callbot:line-worker-failures"
"""Redis list of JSON ``{host, pid, at, error}``: processes that could not start (newest first)."""


def report_startup_failure(redis: Any, error: str) -> None:
    """Tell the web app a line worker of this host could not start, and why."""
    import json

    try:
        with redis.pipeline(transaction=False) as p:
            p.lpush(FAILURES_KEY, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                              "at": time.time(), "error": error[:1000]},
                                             ensure_ascii=False))
            p.ltrim(FAILURES_KEY, 0, 19)
            p.expire(FAILURES_KEY, STATUS_TTL_S)
            p.execute()
    except Exception:  # noqa: BLE001 - the error is printed and logged anyway
        log.debug("could not report a startup failure", exc_info=True)


class StartupError(CampaignError):
    """A line-worker process could not get its phone or speech model: one clear message, and
    its supervisor stops instead of restarting it forever."""


def _on_signals(fn: Callable[[], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: fn())


def _supervise(sizes: list[int], runner: str, queue_name: str,
               settings: Settings | None = None) -> int:
    stop = threading.Event()
    _on_signals(stop.set)
    env = dict(os.environ)
    # glibc gives each thread its own malloc arena (64 MB of address space, several MB touched);
    # a line process has a dozen threads (lines, pjsua2, heartbeat): two arenas are plenty
    env.setdefault("MALLOC_ARENA_MAX", "2")
    from callbot import parent

    env[parent.ENV] = str(os.getpid())  # the children stop when this process dies, even by -9
    _upgrade_for_children(env)
    store = None
    if settings is not None and settings.extra.get("shared_store", "1") != "0":
        store = _start_store(settings, env, stop)
        if store is None:
            return defaults.EXIT_CONFIG
    speech = None
    if settings is not None and runner == DEFAULT_RUNNER and \
            settings.extra.get("shared_speech", "1") != "0":
        speech = _start_speech(settings, env, stop)
        if speech is None:
            _stop_child(store)
            return defaults.EXIT_CONFIG

    def spawn(n: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "callbot", "worker", "--lines", str(n),
                                 "--runner", runner, "--queue", queue_name], env=env)

    procs = [spawn(n) for n in sizes]
    holder = [speech, store]
    try:
        return _watch(procs, sizes, spawn, stop, holder, settings, env)
    finally:
        for child in holder:  # the line processes are gone by now: nothing writes any more
            _stop_child(child)


def _stop_child(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _start_store(settings: Settings, env: dict[str, str],
                 stop: threading.Event) -> subprocess.Popen[bytes] | None:
    """Start the host's store process (callbot.campaign.store_service) and wait until it
    answers; None (after one clear error) when it cannot start. Sets CALLBOT_STORE_SOCKET in
    *env* for the line processes."""
    from callbot.campaign.linestore import ENV, address_for, ping

    address = address_for(settings.data_dir, os.getpid())
    env[ENV] = "@" + address[1:]
    return _start_service("callbot.campaign.store_service", address, ping, env, stop,
                          "存储进程", "store process")


def _start_speech(settings: Settings, env: dict[str, str],
                  stop: threading.Event) -> subprocess.Popen[bytes] | None:
    """Start the host's speech process (callbot.speech.service) and wait until it answers;
    None (after one clear error) when it cannot load its model. Sets CALLBOT_SPEECH_SOCKET in
    *env* for the line processes."""
    from callbot.speech.service import ENV, address_for, ping

    def report(code: int) -> None:
        try:
            report_startup_failure(redis_connection(settings),
                                   f"语音服务无法启动 (speech process exited with {code}; "
                                   "see the worker's log)")
        except Exception:  # noqa: BLE001
            pass

    address = address_for(settings.data_dir)
    env[ENV] = "@" + address[1:]
    return _start_service("callbot.speech.service", address, ping, env, stop,
                          "语音服务", "speech process", poll_s=0.2, on_exit=report)


def _start_service(module: str, address: str, ping: Callable[[str, float], Any],
                   env: dict[str, str], stop: threading.Event, name_cn: str, name_en: str, *,
                   poll_s: float = 0.1, on_exit: Callable[[int], None] | None = None
                   ) -> subprocess.Popen[bytes] | None:
    """Start ``python -m module`` and wait until it answers *ping* at *address*; None (after one
    clear error, and *on_exit* with its exit code) when it exits first or is not ready within
    ``SPEECH_SERVICE_START_S``. The process itself when *stop* is set meanwhile (terminated)."""
    proc = subprocess.Popen([sys.executable, "-m", module], env=env)
    deadline = time.monotonic() + defaults.SPEECH_SERVICE_START_S
    while not stop.is_set():
        code = proc.poll()
        if code is not None:
            log.error("%s exited with %s before it was ready: not starting the line workers "
                      "(fix the error above, then start `callbot worker` again)", name_en, code)
            print(f"callbot worker: {name_cn}无法启动，线路未启动 (the {name_en} could not start: "
                  "see the error above)", file=sys.stderr, flush=True)
            if on_exit is not None:
                on_exit(code)
            return None
        try:
            ping(address, 1.0)
            return proc
        except (OSError, ValueError, CallbotError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            print(f"callbot worker: {name_cn}启动超时 ({name_en} not ready after "
                  f"{defaults.SPEECH_SERVICE_START_S:.0f} s)", file=sys.stderr, flush=True)
            return None
        time.sleep(poll_s)
    proc.terminate()
    return proc


def _watch(procs: list[subprocess.Popen[bytes]], sizes: list[int],
           spawn: Callable[[int], subprocess.Popen[bytes]], stop: threading.Event,
           holder: list[subprocess.Popen[bytes] | None], settings: Settings | None,
           env: dict[str, str]) -> int:
    """Restart line processes that die (ever more slowly when they die at once), and the speech
    process; stop everything when one cannot start for a reason a restart will not fix."""
    started = [time.monotonic()] * len(procs)
    backoff = [0.0] * len(procs)
    due = [0.0] * len(procs)
    log.warning("supervisor: %d line worker process(es), %d lines: pids %s", len(procs),
                sum(sizes), [p.pid for p in procs])
    failed = 0
    while not stop.is_set():
        now = time.monotonic()
        speech = holder[0]
        if speech is not None and speech.poll() is not None and settings is not None:
            log.error("speech process exited with %s; starting it again", speech.returncode)
            holder[0] = _start_speech(settings, env, stop)
            if holder[0] is None:
                failed = defaults.EXIT_CONFIG
                break
        store = holder[1]
        if store is not None and store.poll() is not None and settings is not None:
            # the line processes' writes wait (retried for DB_RETRY_S) and their lines take no
            # job meanwhile
            log.error("store process exited with %s; starting it again", store.returncode)
            holder[1] = _start_store(settings, env, stop)
            if holder[1] is None:
                failed = defaults.EXIT_CONFIG
                break
        for i, p in enumerate(procs):
            if p.poll() is None:
                continue
            if p.returncode == defaults.EXIT_CONFIG:
                # it said why (no model, account refused...): the others would fail alike
                log.error("line worker pid %s cannot start; stopping all line workers", p.pid)
                failed = defaults.EXIT_CONFIG
                stop.set()
                break
            if not due[i]:
                # a child that dies at once (no sip.conf, no model) is retried ever more slowly
                quick = now - started[i] < 10
                backoff[i] = min(30.0, backoff[i] * 2 or 1.0) if quick else 0.0
                due[i] = now + backoff[i]
                log.warning("line worker pid %s exited with %s; restarting in %.0f s", p.pid,
                            p.returncode, backoff[i])
            if now >= due[i]:
                procs[i], started[i], due[i] = spawn(sizes[i]), now, 0.0
        stop.wait(0.5)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + defaults.MAX_CALL_S
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return failed


def processes_for(lines: int, settings: Settings | None = None) -> int:
    """How many line-worker processes ``--lines`` starts."""
    per = lines_per_process(settings) if settings is not None else \
        defaults.CALLS_PER_PROCESS - defaults.TRANSFER_SPARE_LEGS
    return math.ceil(lines / per)
