"""The real call runner of a line worker: one Phone (pjsua2 Endpoint) per process, the TTS and
ASR engines, and ``session.run_call`` for each job."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from callbot import defaults
from callbot.campaign.jobs import CallJob, CallOutcome, OnEnd, OnHeard, OnRecord, OnReply
from callbot.config import Settings
from callbot.exceptions import ConfigError

if TYPE_CHECKING:
    from callbot.transfer import TransferPlan

log = logging.getLogger(__name__)


class SessionRunner:
    """Places scripted calls on this process's phone; up to ``lines`` at once (one per thread)."""

    def __init__(self, settings: Settings, lines: int):
        from callbot import intents
        from callbot.config import load_sip_conf
        from callbot.speech.asr import load_asr
        from callbot.speech.tts import make_tts
        from callbot.telephony import Phone

        if settings.sip_conf is None:
            raise ConfigError("没有 sip.conf：设置 CALLBOT_SIP_CONF 或在当前目录放 sip.conf "
                              "(no sip.conf: set CALLBOT_SIP_CONF)", key="CALLBOT_SIP_CONF")
        self.settings = settings
        remote = _shared_asr(settings)
        self.tts = _LockedTts(line_tts(make_tts(settings), shared_host=remote is not None))
        self._offline: Any = None
        self.asr = remote or load_asr(settings)
        if remote is None:  # beside the speech process the replies are classified there
            intents.warm()  # the lexicon now, not at the first reply of a call
        _give_back_heap()
        self.phone = Phone(load_sip_conf(settings.sip_conf))
        self.phone.start()
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()
        _sweep_incoming(settings.recordings_dir / "incoming")

    def _script(self, name: str) -> Any:
        from callbot.script import load_script

        with self._lock:
            if name not in self._scripts:
                self._scripts[name] = load_script(name)
            return self._scripts[name]

    def __call__(self, job: CallJob, on_record: OnRecord, *,
                 on_end: OnEnd | None = None, on_reply: OnReply | None = None,
                 on_heard: OnHeard | None = None) -> CallOutcome:
        from callbot.campaign.jobs import COMPLETING
        from callbot.session import run_call

        record_to = None
        if job.record_call:  # a temporary WAV here; the job stores it where every host reads
            incoming = self.settings.recordings_dir / "incoming"
            incoming.mkdir(parents=True, exist_ok=True)
            record_to = incoming / f"attempt-{job.attempt_id}.wav"
        # CALLBOT_CALL_TTS_RATE overrides every script's own rate (the demo speaks faster)
        try:
            rep = run_call(self.phone, job.dial, self._script(job.script), job.variables,
                           self.tts_for(job), self.asr, on_record=on_record, on_end=on_end,
                           on_reply=on_reply, on_heard=on_heard, record_to=record_to,
                           committee=job.committee or self.settings.committee,
                           transfer=self.transfer_plan(job),
                           tts_rate=self.settings.extra.get("call_tts_rate") or None,
                           extension=getattr(job, "extension", "") or "")
        except BaseException:
            if record_to is not None:
                record_to.unlink(missing_ok=True)
            raise
        r = rep.result
        _log_timings(self.settings, job, rep)
        return CallOutcome(
            outcome=str(r.outcome), completed=rep.ended in COMPLETING, sip_code=r.sip_code,
            talk_s=float(r.talk_s) if r.outcome == "answered" else None,
            answered_at=_naive_utc(getattr(r, "answered_at", None)), ended=rep.ended,
            transcript=_jsonable(rep.transcript), answers=dict(rep.answers),
            recording=rep.recording, transfer=rep.transfer,
            announcement=getattr(r, "announcement", None))

    def tts_for(self, job: CallJob) -> Any:
        """The prompt renderer of this call: with the campaign's ``tts_personal: offline`` the
        contact's name, address… are synthesised here by espeak-ng, never sent online."""
        if getattr(job, "tts_personal", "online") != "offline":
            return self.tts
        from callbot.speech.tts import EspeakTts, keep_personal_offline

        if self._offline is None:
            inner = self.tts.inner
            self._offline = _LockedTts(type(inner)([EspeakTts()], inner.cache_dir,
                                                   rate=inner.rate, volume=inner.volume,
                                                   shared=inner.shared))
        return keep_personal_offline(self.tts, job.variables, self._offline)

    def transfer_plan(self, job: CallJob) -> TransferPlan:
        """Where this call's 转人工 goes: the committee's duty phone, else CALLBOT_DUTY_NUMBER."""
        from callbot.transfer import TransferPlan

        env = self.settings.extra
        timeout = job.transfer_timeout_s or _float(env.get("transfer_timeout")) \
            or defaults.TRANSFER_TIMEOUT_S
        return TransferPlan(to=job.duty_number or env.get("duty_number") or None,
                            timeout_s=timeout, method=self.phone.config.transfer)

    def close(self) -> None:
        self.phone.stop()


class _LockedTts:
    """Prompt rendering shared by the lines of one process, one render at a time (cache files)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self._lock = threading.Lock()

    def render(self, text: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.inner.render(text, *args, **kwargs)

    def prerender(self, texts: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self.inner.prerender(list(texts), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def line_tts(renderer: Any, *, shared_host: bool) -> Any:
    """The prompt renderer of a line process. With the host's speech process (``callbot worker``
    over more lines than one process holds) a prompt that was not rendered ahead is synthesised
    by a short-lived child (``speech.render_child``): rendering it here would keep edge-tts,
    aiohttp, numpy and pypinyin in this process for good (+80 MB measured)."""
    from callbot.speech.tts import PromptRenderer

    if not shared_host or type(renderer) is not PromptRenderer:
        return renderer
    from callbot.speech.render_child import ChildRenderer

    return ChildRenderer.like(renderer)


def _shared_asr(settings: Settings) -> Any:
    """The host's speech process when ``callbot worker`` started one (CALLBOT_SPEECH_SOCKET):
    the model is loaded once per host, and the lexicon's readings come from its memo, so this
    process loads neither the model nor pypinyin."""
    from callbot.speech.service import pinyin_memo_path, remote_from_env

    remote = remote_from_env()
    if remote is not None:
        from callbot import pinyin

        pinyin.load_memo(pinyin_memo_path(settings))
    return remote


def _give_back_heap() -> None:
    """Hand the C heap freed while loading the memo and the lexicon back to the system (glibc's
    ``malloc_trim``; elsewhere nothing): ~3 MB of every line process's RSS (stop 20)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _sweep_incoming(folder: Any) -> None:
    """Delete whole-call WAVs a killed worker left behind (personal data must not outlive its
    retention on a worker's disk). A file still written by a live call is younger than the
    longest call."""
    import time

    from callbot import defaults

    if not folder.is_dir():
        return
    cutoff = time.time() - (defaults.MAX_CALL_S + defaults.RING_TIMEOUT_S + 300)
    for path in folder.glob("attempt-*.wav"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                log.warning("deleted a call recording left by a stopped worker: %s", path.name)
        except FileNotFoundError:
            continue


def _log_timings(settings: Settings, job: CallJob, rep: Any) -> None:
    """With CALLBOT_CALL_TIMINGS=FILE, append the call's latencies and frame count to FILE as
    one JSON line (bench/capacity.py reads it; off by default)."""
    path = settings.extra.get("call_timings")
    if not path:
        return
    import json

    r = rep.result
    line = json.dumps({"attempt": job.attempt_id, "pid": os.getpid(), "timings": rep.timings,
                       "frames": rep.frames, "outcome": str(r.outcome),
                       "talk_s": float(r.talk_s or 0.0)})
    with open(path, "a", encoding="utf-8") as f:  # one write per line: appends do not interleave
        f.write(line + "\n")


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v else None
    except ValueError:
        return None


def _naive_utc(t: Any) -> Any:
    from datetime import UTC

    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(UTC).replace(tzinfo=None)


def _jsonable(x: Any) -> Any:
    import json

    return json.loads(json.dumps(x, ensure_ascii=False, default=str))


def session_runner(settings: Settings, lines: int) -> SessionRunner:
    """Factory named by ``callbot worker`` (``callbot.campaign.runner:session_runner``)."""
    return SessionRunner(settings, lines)
