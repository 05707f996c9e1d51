"""One speech process per host: the recogniser loaded once, shared by every line-worker process.

A line-worker process holds at most 4 calls (the pjsua2 wheel), so 100 lines are 34 processes;
with the model, onnxruntime and pypinyin in each, that was ~240 MB per process. Here the model
lives in one process (``callbot worker`` starts it beside its line processes). A line process
keeps the cheap part of a stream (webrtcvad endpointing, barge-in, no-input) and sends only the
audio of a reply — from just before speech starts to its end — to this process, which decodes it
as it arrives and answers with ``(text, match, confidence, pinyin)`` when the reply ends. An
idle line never opens a connection.

Wire format, one Unix-socket connection per reply: a JSON line ``{"expect": [...]}``, then
frames as a 4-byte big-endian length and that many bytes of 8 kHz 16-bit PCM, then a 0 length;
the answer is one JSON line ``{"result": [text, match, confidence, pinyin]}`` or ``{"error": …}``.
A header that also names the question's intents (``{"expect": [...], "intents": [...]}``) gets
the reply classified here too (``intents.classify``: the lexicon lives in this process, not in
the 34 line processes of 100 lines, ~7 MB and ~0.08 CPU-s a call): the answer line then also
holds ``"answer": {"asked": intents, "answer": {intent, value, text, urgent, pinyin} or null,
"pinyin": the reply's pinyin for the transcript}``.
A connection that sends ``{"hello": 1}`` gets ``{"engine": NAME, "model": NAME}`` (readiness).
A connection that sends ``{"encode": {"rate": R, "level": L}}`` and one length-prefixed piece of
PCM gets ``{"size": N}`` and N bytes of Ogg Opus (``recordings.encode``: a line process then
never loads numpy and libsndfile, ~13 MB each), or ``{"error": …}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callbot import defaults, peer
from callbot.exceptions import SpeechError

log = logging.getLogger(__name__)

ENCODE_WAIT_MAX_S = 5.0
"""Longest audio to compress waits while replies wait for their answers, s."""
ENV = "CALLBOT_SPEECH_SOCKET"
"""Set by ``callbot worker`` for its line processes: the speech process's socket address."""


def address_for(data_dir: Path) -> str:
    """The speech process's address for an installation: an abstract Unix socket named after
    the data dir (one per host and installation; no file left behind, no path-length limit)."""
    digest = hashlib.sha1(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]
    return f"\0callbot-speech-{digest}"


def pinyin_memo_path(settings: Any) -> Path:
    """Where the speech process writes the lexicon's pypinyin readings for line processes."""
    return Path(settings.cache_dir) / "pinyin-memo.json"


# --- server ---------------------------------------------------------------------------------------


def _decoder(engine: Any, expect: Sequence[str]) -> Any:
    """The engine-specific decoder of one reply (what an engine's stream wraps in endpointing)."""
    return engine.stream(list(expect))._decoder


def _read_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client went away")
        buf += chunk
    return bytes(buf)


def _read_line(conn: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise ConnectionError("client went away")
        buf += chunk
        if len(buf) > 1 << 20:
            raise ConnectionError("header too long")
    return bytes(buf)


def _read_line_from(f: Any) -> bytes:
    """One header line from a connection's buffered reader (at most 1 MB)."""
    line = f.readline(1 << 20)
    if not line.endswith(b"\n"):
        raise ConnectionError("client went away" if len(line) < 1 << 20 else "header too long")
    return bytes(line)


def _read_exact_from(f: Any, n: int) -> bytes:
    data = f.read(n)
    if data is None or len(data) < n:
        raise ConnectionError("client went away")
    return bytes(data)


class _Reply:
    """One reply in the speech process: its decoder, audio not decoded yet, and the answer."""

    __slots__ = ("dec", "pending", "ending", "dropped", "answer", "done", "since", "counted")

    def __init__(self, dec: Any):
        self.dec = dec
        self.pending = bytearray()
        self.ending = False  # the line process sent the end and waits for the answer
        self.dropped = False  # the line process went away
        self.answer: dict[str, Any] | None = None
        self.done = threading.Event()
        self.since = 0.0
        self.counted = False  # in its decoder's ``waiting``


class _DecodeThread(threading.Thread):
    """One copy of the model and the replies given to it. Each turn it decodes first the replies
    whose line process waits for the answer (oldest first), then the audio of the others, all
    that piled up since its last turn in one piece per reply. A burst of replies thus costs no
    more than their audio, the answers come in the order the replies ended, and no thread per
    reply contends for the model (the engine releases the GIL while the network runs, so one
    thread per core decodes in parallel)."""

    def __init__(self, engine: Any, index: int):
        super().__init__(daemon=True, name=f"speech-decode-{index}")
        self.engine = engine
        self.cv = threading.Condition()
        self.replies: list[_Reply] = []
        self.waiting = 0
        """Replies whose line process waits for the answer (ended, not answered yet)."""

    def open(self, expect: Sequence[str]) -> _Reply:
        reply = _Reply(_decoder(self.engine, expect))
        with self.cv:
            self.replies.append(reply)
        return reply

    def add(self, reply: _Reply, pcm: bytes) -> None:
        with self.cv:
            reply.pending += pcm
            self.cv.notify()

    def end(self, reply: _Reply) -> None:
        import time

        with self.cv:
            reply.since = time.monotonic()
            reply.ending = True
            if reply.answer is None:
                reply.counted = True
                self.waiting += 1
            self.cv.notify()

    def drop(self, reply: _Reply) -> None:
        with self.cv:
            reply.dropped = True
            self.cv.notify()

    def run(self) -> None:
        while True:
            with self.cv:
                while not any(r.ending or r.dropped or r.pending for r in self.replies):
                    self.cv.wait()
                for r in self.replies:
                    if r.dropped and r.counted:
                        r.counted = False
                        self.waiting -= 1
                self.replies = [r for r in self.replies if not r.dropped]
                ending = sorted((r for r in self.replies if r.ending), key=lambda r: r.since)
                todo = ending or [r for r in self.replies if r.pending]
                work = []
                for r in todo:
                    # the end is read with the audio: a reply that ends while this turn decodes
                    # its earlier audio is answered next turn, with the audio sent before its end
                    work.append((r, bytes(r.pending), r.ending))
                    r.pending.clear()
                    if r.ending:
                        self.replies.remove(r)
            for r, pcm, last in work:
                self._turn(r, pcm, last)

    def _turn(self, reply: _Reply, pcm: bytes, ending: bool) -> None:
        try:
            if pcm:
                reply.dec.feed(pcm)
            if not ending:
                return
            res = list(reply.dec.result())
            while len(res) < 4:
                res.append("")
            reply.answer = {"result": res}
        except Exception as exc:  # noqa: BLE001 - reported to the caller, and logged
            log.exception("speech service: a reply failed")
            reply.answer = {"error": f"{type(exc).__name__}: {exc}"}
            with self.cv:
                if reply in self.replies:
                    self.replies.remove(reply)
        if reply.answer is not None:
            with self.cv:
                if reply.counted:
                    reply.counted = False
                    self.waiting -= 1
            reply.done.set()


def _classified(result: Sequence[Any], asked: Any) -> dict[str, Any] | None:
    """A reply classified among the *asked* intents, for the line process (see the wire format);
    None when it cannot be (the line process then classifies it itself)."""
    from callbot import intents
    from callbot.pinyin import pinyin_of

    try:
        text, pinyin = str(result[0] or ""), str(result[3] or "")
        wanted = [str(i) for i in asked]
        got = intents.classify(text, wanted, pinyin=pinyin or None) if text.strip() else None
        said = pinyin or (pinyin_of(text) if text.strip() else "")
    except (ValueError, TypeError, IndexError):
        log.exception("speech service: a reply could not be classified")
        return None
    answer = None
    if got is not None:
        answer = {"intent": got.intent, "value": got.value, "text": got.text,
                  "urgent": got.urgent, "pinyin": got.pinyin}
        if json.loads(json.dumps(got.value)) != got.value:
            return None  # not a JSON value: the line process classifies it itself
    return {"asked": wanted, "answer": answer, "pinyin": said}


def decoder_count() -> int:
    """How many decoding threads (copies of the model) the speech process runs."""
    env = os.environ.get("CALLBOT_SPEECH_DECODERS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if defaults.SPEECH_SERVICE_DECODERS:
        return defaults.SPEECH_SERVICE_DECODERS
    return max(1, min(4, os.cpu_count() or 1))


class SpeechService:
    """The server: one reader thread per connection (it only moves audio), the decoding in
    :class:`_DecodeThread` s, each with its own loaded engine."""

    def __init__(self, engine: Any, address: str, *, more: Sequence[Any] = ()):
        self.engine = engine
        self.address = address
        self.decoders = [_DecodeThread(e, i) for i, e in enumerate([engine, *more])]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(address)
        except OSError as exc:
            raise SpeechError(f"语音服务已在运行或地址被占用 (speech service address in use): {exc}") \
                from exc
        self.sock.listen(512)
        self.stop = threading.Event()
        for d in self.decoders:
            d.start()

    def serve_forever(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.stop.is_set():
                    return
                raise
            threading.Thread(target=self._handle, args=(conn,), daemon=True,
                             name="speech-conn").start()

    def close(self) -> None:
        self.stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _least_busy(self) -> _DecodeThread:
        return min(self.decoders, key=lambda d: len(d.replies))

    def _handle(self, conn: socket.socket) -> None:
        # buffered: the header line (~1 kB of expected phrases) and the frames are read in a
        # few recv calls, not one a byte (each a GIL round trip beside the decoding threads)
        if not peer.trusted(conn):
            log.warning("speech process: a connection from uid %s refused (only this user's "
                        "line processes are heard here)", peer.peer_uid(conn))
            conn.close()
            return
        with conn, conn.makefile("rb") as f:
            try:
                head = json.loads(_read_line_from(f))
                if "hello" in head:
                    conn.sendall(json.dumps({"engine": self.engine.name,
                                             "model": self.engine.model_name,
                                             "decoders": len(self.decoders)}).encode() + b"\n")
                    return
                if "encode" in head:
                    self._encode(conn, f, head["encode"] or {})
                    return
            except (ConnectionError, OSError, ValueError):
                return
            worker = self._least_busy()
            reply = worker.open(head.get("expect") or [])
            try:
                while True:
                    (n,) = struct.unpack(">I", _read_exact_from(f, 4))
                    if n == 0:
                        break
                    worker.add(reply, _read_exact_from(f, n))
                worker.end(reply)
                # the answer waits its turn: tell the line process we are alive meanwhile
                while not reply.done.wait(defaults.SPEECH_SERVICE_KEEPALIVE_S):
                    conn.sendall(b"\n")
                out = reply.answer or {"error": "no answer"}
                if "result" in out and head.get("intents") is not None:
                    out = {**out, "answer": _classified(out["result"], head["intents"])}
                conn.sendall(json.dumps(out, ensure_ascii=False).encode() + b"\n")
            except (ConnectionError, OSError):
                worker.drop(reply)


    def _encode(self, conn: socket.socket, f: Any, opts: dict[str, Any]) -> None:
        """A line process's reply or call audio → Ogg Opus (in this connection's thread)."""
        import time

        (n,) = struct.unpack(">I", _read_exact_from(f, 4))
        pcm = _read_exact_from(f, n)
        # answers first: stored audio waits while a line process waits for a reply's answer
        deadline = time.monotonic() + ENCODE_WAIT_MAX_S
        while any(d.waiting > 0 for d in self.decoders) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            from callbot.speech import opus

            data = opus.encode(pcm, int(opts.get("rate", defaults.SAMPLE_RATE)),
                               float(opts.get("level", defaults.RECORDING_OPUS_LEVEL)))
        except Exception as exc:  # noqa: BLE001 - the line process encodes it itself then
            log.exception("speech service: encoding failed")
            conn.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"},
                                    ensure_ascii=False).encode() + b"\n")
            return
        conn.sendall(json.dumps({"size": len(data)}).encode() + b"\n" + data)


def serve(settings: Any = None) -> int:
    """``python -m callbot.speech.service``: load the recogniser, write the pinyin memo for the
    line processes, serve until SIGTERM. Exits 78 (configuration) when the model cannot load."""
    import signal

    from callbot.config import load_settings
    from callbot.exceptions import CallbotError
    from callbot.parent import die_with_parent

    die_with_parent()  # started by `callbot worker`: gone with it
    settings = settings or load_settings()
    try:
        from callbot.speech.asr import load_asr

        engine = load_asr(settings)
        more = [load_asr(settings) for _ in range(decoder_count() - 1)]
        service = SpeechService(engine, address_for(settings.data_dir), more=more)
    except CallbotError as exc:
        import sys

        print(f"callbot: {exc}", file=sys.stderr, flush=True)
        return defaults.EXIT_CONFIG
    try:
        from callbot import intents, pinyin

        intents.warm()
        pinyin.save_memo(pinyin_memo_path(settings))
    except OSError:
        log.exception("could not write the pinyin memo (line processes will load pypinyin)")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.close())
    log.warning("speech service: %s (%s, %d decoder(s)) for the line workers of %s", engine.name,
                engine.model_name, len(service.decoders), settings.data_dir)
    service.serve_forever()
    return 0


# --- client ---------------------------------------------------------------------------------------


class RemoteDecoder:
    """The decoder half of a stream, run by the speech process. Connects at the first audio of
    a reply (a stream that hears no speech costs nothing) and sends the audio in pieces of
    ``SPEECH_SERVICE_SEND_MS``. A failure to send is kept for :meth:`result`, which raises it:
    the stream goes on listening (endpointing is local) and the reply ends as one SpeechError."""

    def __init__(self, address: str, expect: Sequence[str], timeout_s: float,
                 result_max_s: float = defaults.SPEECH_SERVICE_RESULT_MAX_S, *,
                 intents: Sequence[str] | None = None):
        self.address = address
        self.expect = list(expect)
        self.intents = None if intents is None else list(intents)
        self.answer: dict[str, Any] | None = None
        """The speech process's classification of the last reply (``intents`` given), or None."""
        self.timeout_s = timeout_s
        self.result_max_s = result_max_s
        self._conn: socket.socket | None = None
        self._buf = bytearray()
        self._send_bytes = defaults.FRAME_BYTES * max(1, defaults.SPEECH_SERVICE_SEND_MS
                                                      // defaults.FRAME_MS)
        self._failed: SpeechError | None = None

    def _open(self) -> socket.socket:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(self.timeout_s)
        try:
            conn.connect(self.address)
            head: dict[str, Any] = {"expect": self.expect}
            if self.intents is not None:
                head["intents"] = self.intents
            conn.sendall(json.dumps(head, ensure_ascii=False).encode() + b"\n")
        except OSError as exc:
            conn.close()
            raise SpeechError(f"语音服务不可用 (speech service unreachable): {exc}") from exc
        return conn

    def _send(self, data: bytes) -> None:
        if self._failed is not None:
            return
        try:
            if self._conn is None:
                self._conn = self._open()
            self._conn.sendall(data)
        except SpeechError as exc:
            self._failed = exc
        except OSError as exc:
            self._failed = SpeechError(f"语音服务中断 (speech service went away): {exc}")

    def feed(self, pcm: bytes) -> str | None:
        self._buf += pcm
        if len(self._buf) >= self._send_bytes:
            data, self._buf = bytes(self._buf), bytearray()
            self._send(struct.pack(">I", len(data)) + data)
        return None

    def result(self) -> tuple[str, str | None, float, str]:
        if self._conn is None and not self._buf and self._failed is None:
            return "", None, 0.0, ""
        tail = struct.pack(">I", len(self._buf)) + bytes(self._buf) if self._buf else b""
        self._buf = bytearray()
        self._send(tail + struct.pack(">I", 0))
        conn, self._conn = self._conn, None
        try:
            if self._failed is not None:
                raise self._failed
            assert conn is not None
            line = self._answer(conn)
        finally:
            if conn is not None:
                conn.close()
        got = json.loads(line)
        if "error" in got:
            raise SpeechError(f"语音识别失败 (speech service): {got['error']}")
        text, match, conf, pinyin = got["result"][:4]
        answer = got.get("answer")
        self.answer = answer if isinstance(answer, dict) else None
        return str(text), match, float(conf), str(pinyin)

    def _answer(self, conn: socket.socket) -> bytes:
        """The answer line; keep-alive lines (empty) while the reply waits its turn. Raises
        SpeechError after ``timeout_s`` of nothing or ``result_max_s`` in all."""
        import time

        deadline = time.monotonic() + self.result_max_s
        buf = bytearray()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SpeechError("语音服务太忙 (speech service busy): no result in "
                                      f"{self.result_max_s:.0f} s")
                conn.settimeout(min(self.timeout_s, left))
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("speech service closed the connection")
                buf += chunk
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf = bytearray(rest)
                    if line.strip():
                        return line
        except (OSError, ConnectionError) as exc:
            raise SpeechError(f"语音服务中断 (speech service went away): {exc}") from exc


class RemoteAsr:
    """An ``AsrEngine`` whose decoding runs in the host's speech process; given the question's
    intents (``stream(intents=...)``) it classifies the reply there too (``Final.answer``)."""

    classifies = True

    def __init__(self, address: str, *, timeout_s: float = defaults.SPEECH_SERVICE_TIMEOUT_S,
                 result_max_s: float = defaults.SPEECH_SERVICE_RESULT_MAX_S):
        self.address = address
        self.timeout_s = timeout_s
        self.result_max_s = result_max_s
        hello = ping(address, timeout_s)
        self.name: str = hello["engine"]
        self.model_name: str = hello["model"]

    def stream(self, expect: Sequence[str] = (), *, no_input_s: float = defaults.ASR_NO_INPUT_S,
               max_reply_s: float = defaults.ASR_MAX_REPLY_S,
               trailing_silence_s: float = defaults.ASR_TRAILING_SILENCE_S,
               intents: Sequence[str] | None = None) -> Any:
        from callbot.speech.asr import EndpointingStream, NoPhrases

        decoder: Any = RemoteDecoder(self.address, expect, self.timeout_s, self.result_max_s,
                                     intents=intents)
        if not expect and self.name in ("kws", "vosk"):
            decoder = NoPhrases()  # keyword spotting with nothing to spot: as the local engine
        return EndpointingStream(decoder, no_input_s=no_input_s, max_reply_s=max_reply_s,
                                 trailing_silence_s=trailing_silence_s)


def ping(address: str, timeout_s: float = 2.0) -> dict[str, Any]:
    """The speech process's engine and model names; raises SpeechError when it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout_s)
            conn.connect(address)
            conn.sendall(b'{"hello": 1}\n')
            return dict(json.loads(_read_line(conn)))
    except (OSError, ConnectionError, ValueError) as exc:
        raise SpeechError(f"语音服务不可用 (speech service unreachable): {exc}") from exc


def _env_address() -> str | None:
    addr = os.environ.get(ENV)
    if not addr:
        return None
    return addr.replace("@", "\0", 1) if addr.startswith("@") else addr


def encode_remote(pcm: bytes, rate: int, level: float) -> bytes | None:
    """Ogg Opus of *pcm* made by the host's speech process, or None when there is none (not a
    line process of ``callbot worker``) or it could not (the caller encodes it itself)."""
    address = _env_address()
    if address is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(defaults.SPEECH_SERVICE_RESULT_MAX_S)
            conn.connect(address)
            conn.sendall(json.dumps({"encode": {"rate": rate, "level": level}}).encode() + b"\n"
                         + struct.pack(">I", len(pcm)) + pcm)
            head = json.loads(_read_line(conn))
            if "error" in head:
                log.warning("speech service could not encode audio (%s): encoding it here",
                            head["error"])
                return None
            return _read_exact(conn, int(head["size"]))
    except (OSError, ConnectionError, ValueError, KeyError) as exc:
        log.warning("speech service did not encode audio (%s): encoding it here", exc)
        return None


def remote_from_env() -> RemoteAsr | None:
    """The host's speech process named by CALLBOT_SPEECH_SOCKET, or None when unset."""
    addr = _env_address()
    return None if addr is None else RemoteAsr(addr)


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    code = serve()
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the decoding threads sit in the engine's C++ (abort at exit)
