"""espeak-ng and SoX through their libraries (Debian ``libespeak-ng1``, ``libsox3``), not their
command-line programs: the same samples, without a child program per prompt.

Rendering a contact's greeting ran ``espeak-ng`` (~17–20 CPU-ms, half of it the program starting
and loading its Mandarin dictionary) and two ``sox`` runs (the 8 kHz copy, ~7–10 ms; the slowed
copy, ~6 ms): ~35 ms of the dispatcher's CPU per attempt. Here:

- **SoX** runs in this process (``libsox.so.3`` through ctypes): the chain the ``sox`` program
  builds for the same command line (input → highpass → gain → rate → dither → output; tempo →
  dither), with its pseudo-random seed set back to the one ``sox -R`` starts with before each
  run, so a file is byte for byte what ``sox -R`` writes (checked by tests/speech/test_native.py).
- **espeak-ng** keeps state from one synthesis to the next inside the library (the voice's
  flutter phase, echo buffer, wave generator): a second prompt rendered by one library instance
  differs from what the program writes (a few ms longer or shorter, other samples). So each
  synthesis runs in a fresh copy of a small process that loaded the library and never spoke: a
  *zygote* (``python -m callbot.speech.native``, started at the first prompt, ends with its
  parent) forks one child per prompt, which synthesises and hands the 22.05 kHz samples back
  — exactly the program's first and only synthesis.

Everything falls back to the programs (``espeak-ng``, ``sox``) when a library is missing or
fails; ``CALLBOT_NATIVE_AUDIO=0`` turns this module off. Nothing outside the standard library is
imported here (the zygote is small).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV = "CALLBOT_NATIVE_AUDIO"
ESPEAK_RATE = 22050
"""espeak-ng's sample rate (its voices' native rate; the program's ``-w`` WAV)."""

# speak_lib.h (API revision 12)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_SYNTH_FLAGS = 0x0000 | 0x0100 | 0x1000  # espeakCHARS_AUTO | espeakPHONEMES | espeakENDPAUSE,
# what the program passes


def enabled() -> bool:
    """Whether the libraries may be used (``CALLBOT_NATIVE_AUDIO`` is not ``0``)."""
    return os.environ.get(ENV, "1") != "0"


# --- SoX ------------------------------------------------------------------------------------------


class _Signal(ctypes.Structure):  # sox_signalinfo_t
    _fields_ = [("rate", ctypes.c_double), ("channels", ctypes.c_uint),
                ("precision", ctypes.c_uint), ("length", ctypes.c_uint64),
                ("mult", ctypes.POINTER(ctypes.c_double))]


class _Encoding(ctypes.Structure):  # sox_encodinginfo_t
    _fields_ = [("encoding", ctypes.c_int), ("bits_per_sample", ctypes.c_uint),
                ("compression", ctypes.c_double), ("reverse_bytes", ctypes.c_int),
                ("reverse_nibbles", ctypes.c_int), ("reverse_bits", ctypes.c_int),
                ("opposite_endian", ctypes.c_int)]


class _Format(ctypes.Structure):  # the leading members of sox_format_t
    _fields_ = [("filename", ctypes.c_char_p), ("signal", _Signal), ("encoding", _Encoding)]


class _Globals(ctypes.Structure):  # the leading members of sox_globals_t
    _fields_ = [("verbosity", ctypes.c_uint), ("output_message_handler", ctypes.c_void_p),
                ("repeatable", ctypes.c_int), ("bufsiz", ctypes.c_size_t),
                ("input_bufsiz", ctypes.c_size_t), ("ranqd1", ctypes.c_int32)]


_SOX_ENCODING_SIGN2 = 1
_SOX_OPTION_DEFAULT = 2


class Sox:
    """libsox in this process, one chain at a time (the library's globals are shared)."""

    def __init__(self) -> None:
        P = ctypes.c_void_p
        lib = ctypes.CDLL("libsox.so.3")
        fmt = ctypes.POINTER(_Format)
        for name, res, args in (
                ("sox_init", ctypes.c_int, []),
                ("sox_get_globals", ctypes.POINTER(_Globals), []),
                ("sox_open_read", fmt, [ctypes.c_char_p, P, P, ctypes.c_char_p]),
                ("sox_open_mem_read", fmt, [P, ctypes.c_size_t, P, P, ctypes.c_char_p]),
                ("sox_open_write", fmt, [ctypes.c_char_p, P, P, ctypes.c_char_p, P, P]),
                ("sox_create_effects_chain", P, [P, P]),
                ("sox_find_effect", P, [ctypes.c_char_p]),
                ("sox_create_effect", P, [P]),
                ("sox_effect_options", ctypes.c_int, [P, ctypes.c_int,
                                                      ctypes.POINTER(ctypes.c_char_p)]),
                ("sox_add_effect", ctypes.c_int, [P, P, P, P]),
                ("sox_flow_effects", ctypes.c_int, [P, P, P]),
                ("sox_delete_effects_chain", None, [P]),
                ("sox_close", ctypes.c_int, [P])):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib
        self.libc = ctypes.CDLL(None)
        self.libc.free.argtypes = [P]
        if lib.sox_init() != 0:
            raise OSError("sox_init failed")
        self.globals = lib.sox_get_globals().contents
        self.globals.verbosity = 1  # sox -V1: errors only
        self.globals.repeatable = 1  # sox -R
        self.seed = int(self.globals.ranqd1)
        """The seed ``sox -R`` starts with (libsox's initial value): set again before each run,
        since each dither start advances it."""
        self.lock = threading.Lock()

    def run(self, src: Path | bytes, dst: Path, effects: list[tuple[str, list[str]]], *,
            rate: float | None = None) -> None:
        """``sox -R -V1 SRC [-e signed-integer -b 16 -c 1 -r RATE] DST EFFECTS…`` with the
        effects the program adds itself (``rate`` when *rate* differs, then ``dither``).
        *src*: a file, or a WAV file's bytes."""
        lib = self.lib
        with self.lock:
            self.globals.ranqd1 = self.seed
            keep: list[Any] = []
            if isinstance(src, bytes):
                buf = ctypes.create_string_buffer(src, len(src))
                keep.append(buf)
                inp = lib.sox_open_mem_read(buf, len(src), None, None, b"wav")
            else:
                inp = lib.sox_open_read(str(src).encode(), None, None, None)
            if not inp:
                raise OSError(f"libsox cannot read {src if not isinstance(src, bytes) else 'WAV'}")
            out = None
            chain = None
            try:
                isig = inp.contents.signal
                osig = _Signal(rate or isig.rate, 1, 0, 0, None)
                oenc = _Encoding(_SOX_ENCODING_SIGN2, 16, 0.0, _SOX_OPTION_DEFAULT,
                                 _SOX_OPTION_DEFAULT, _SOX_OPTION_DEFAULT, 0)
                out = lib.sox_open_write(str(dst).encode(), ctypes.byref(osig),
                                         ctypes.byref(oenc), b"wav", None, None)
                if not out:
                    raise OSError(f"libsox cannot write {dst}")
                chain = lib.sox_create_effects_chain(
                    ctypes.addressof(inp.contents.encoding),
                    ctypes.addressof(out.contents.encoding))
                sig = _Signal()
                ctypes.memmove(ctypes.byref(sig), ctypes.addressof(isig), ctypes.sizeof(_Signal))
                want = ctypes.addressof(out.contents.signal)
                steps: list[tuple[str, list[Any]]] = [("input", [ctypes.cast(inp, ctypes.c_char_p)])]
                steps += [(n, [a.encode() for a in args]) for n, args in effects]
                if isig.channels != 1:
                    steps.append(("channels", []))
                if (rate or isig.rate) != isig.rate:
                    steps.append(("rate", []))
                steps += [("dither", []), ("output", [ctypes.cast(out, ctypes.c_char_p)])]
                for name, args in steps:
                    handler = lib.sox_find_effect(name.encode())
                    effect = lib.sox_create_effect(handler) if handler else None
                    if not effect:
                        raise OSError(f"libsox has no effect {name}")
                    try:
                        argv = (ctypes.c_char_p * max(1, len(args)))(*args)
                        if lib.sox_effect_options(effect, len(args), argv) != 0 or \
                                lib.sox_add_effect(chain, effect, ctypes.byref(sig), want) != 0:
                            raise OSError(f"libsox effect {name} {args!r} refused")
                    finally:
                        self.libc.free(effect)
                if lib.sox_flow_effects(chain, None, None) != 0:
                    raise OSError(f"libsox failed on {dst}")
            finally:
                if chain:
                    lib.sox_delete_effects_chain(chain)
                if out:
                    lib.sox_close(out)
                lib.sox_close(inp)

    def to_8k(self, src: Path | bytes, dst: Path, gain_db: float | None) -> None:
        """``callbot.speech.audio.convert_to_8k``'s sox command, in this process."""
        effects = [("highpass", ["100"])]
        if gain_db is not None:
            effects.append(("gain", ["-n", str(gain_db)]))
        self.run(src, dst, effects, rate=8000)

    def tempo(self, src: Path, dst: Path, factor: float) -> None:
        """``sox -R -V1 SRC DST tempo -s FACTOR`` (factor as the program is given it)."""
        self.run(src, dst, [("tempo", ["-s", f"{factor:.4f}"])])


_sox: Sox | None = None
_sox_failed = False
_sox_lock = threading.Lock()


def sox() -> Sox | None:
    """This process's libsox, or None (no library, or turned off): use the ``sox`` program."""
    global _sox, _sox_failed
    if not enabled():
        return None
    with _sox_lock:
        if _sox is None and not _sox_failed:
            try:
                _sox = Sox()
            except (OSError, AttributeError) as exc:
                _sox_failed = True
                log.warning("libsox 不可用，改用 sox 程序 (libsox unavailable, using the sox "
                            "program): %s", exc)
        return _sox


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """A 16-bit mono WAV file's bytes, header as espeak-ng's program writes it."""
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(pcm)) + pcm)


# --- espeak-ng --------------------------------------------------------------------------------------

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)


class _Library:
    """libespeak-ng initialised as the program initialises it; synthesises once (see above)."""

    def __init__(self, voice: str):
        lib = ctypes.CDLL("libespeak-ng.so.1")
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.lib = lib
        self.chunks: list[bytes] = []
        self._cb = _CALLBACK(self._collect)
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_DONT_EXIT)
        if rate != ESPEAK_RATE:
            raise OSError(f"espeak_Initialize: {rate}")
        lib.espeak_SetSynthCallback(self._cb)
        self.voice = voice
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise OSError(f"espeak-ng has no voice {voice!r}")

    def _collect(self, wav: Any, n: int, _events: Any) -> int:
        if wav and n > 0:
            self.chunks.append(ctypes.string_at(wav, n * 2))
        return 0

    def synth(self, text: str, voice: str, wpm: int, amp: int) -> bytes:
        lib = self.lib
        if voice != self.voice and lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise OSError(f"espeak-ng has no voice {voice!r}")
        lib.espeak_SetParameter(_ESPEAK_RATE, int(wpm), 0)
        lib.espeak_SetParameter(_ESPEAK_VOLUME, int(amp), 0)
        data = text.encode("utf-8")
        self.chunks.clear()
        if lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _SYNTH_FLAGS, None,
                            None) != 0 or lib.espeak_Synchronize() != 0:
            raise OSError("espeak_Synth failed")
        return b"".join(self.chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(1 << 20, n - len(buf)))
        if not chunk:
            raise EOFError("espeak zygote closed its pipe")
        buf += chunk
    return bytes(buf)


def _frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<Q", len(body)) + body


def zygote_main(voice: str) -> int:
    """The zygote: load the library, then for each request (a length-prefixed JSON line on
    stdin) fork a child that synthesises it and writes ``OK``/``ER`` + length + bytes to
    stdout; one request at a time. Ends when stdin closes or its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL: it holds nothing
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        return 0
    try:
        espeak = _Library(voice)
    except OSError as exc:
        _write_all(1, _frame(b"ER", str(exc).encode()))
        return 1
    _write_all(1, _frame(b"OK", b"ready"))
    while True:
        try:
            (size,) = struct.unpack("<Q", _read_exact(0, 8))
            job = json.loads(_read_exact(0, size))
        except EOFError:
            return 0
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                pcm = espeak.synth(job["text"], job["voice"], job["wpm"], job["amp"])
                _write_all(1, _frame(b"OK", pcm))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                code = 1
                try:
                    _write_all(1, _frame(b"ER", f"{type(exc).__name__}: {exc}".encode()))
                except OSError:
                    pass
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            _write_all(1, _frame(b"ER", f"synthesis killed by signal "
                                        f"{os.WTERMSIG(status)}".encode()))


class Espeak:
    """The client of a zygote: ``pcm(text, voice, wpm, amp)`` → 22.05 kHz 16-bit mono samples,
    each from a fresh copy of the library (as the ``espeak-ng`` program makes them)."""

    def __init__(self, voice: str, *, one_shot: bool = False):
        self.voice = voice
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.one_shot = one_shot
        """A process that renders one prompt and exits (``callbot.speech.render_child``): its
        first synthesis runs in the library here (a fresh instance: the program's samples),
        no zygote is started for it."""

    def _start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                    else "")
        proc = subprocess.Popen([sys.executable, "-S", "-m", "callbot.speech.native", self.voice],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                close_fds=True)
        try:
            kind, body = self._answer(proc)
        except (OSError, EOFError) as exc:
            proc.kill()
            proc.wait()
            raise OSError(f"espeak zygote did not start: {exc}") from exc
        if kind != b"OK":
            proc.wait()
            raise OSError(body.decode(errors="replace"))
        return proc

    @staticmethod
    def _answer(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        head = _read_exact(fd, 10)
        (size,) = struct.unpack("<Q", head[2:])
        return head[:2], _read_exact(fd, size)

    def pcm(self, text: str, voice: str, wpm: int, amp: int) -> bytes:
        job = json.dumps({"text": text, "voice": voice, "wpm": wpm, "amp": amp},
                         ensure_ascii=False).encode()
        with self.lock:
            if self.one_shot:
                self.one_shot = False
                return _Library(voice).synth(text, voice, wpm, amp)
            for attempt in (0, 1):  # a zygote that died is started again once
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = self._start()
                proc = self.proc
                assert proc.stdin is not None
                try:
                    _write_all(proc.stdin.fileno(), struct.pack("<Q", len(job)) + job)
                    kind, body = self._answer(proc)
                except (OSError, EOFError):
                    self.close()
                    if attempt:
                        raise
                    continue
                if kind != b"OK":
                    raise OSError(body.decode(errors="replace"))
                return body
        raise AssertionError("unreachable")

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
            proc.kill()
            proc.wait()


_espeak: Espeak | None = None
_espeak_failed = False
_espeak_lock = threading.Lock()
ONE_SHOT = False
"""Set by a process that renders one prompt and exits (see ``Espeak.one_shot``)."""


def espeak(voice: str) -> Espeak | None:
    """This process's espeak-ng zygote client, or None (turned off, or it failed before)."""
    global _espeak
    if not enabled() or _espeak_failed:
        return None
    with _espeak_lock:
        if _espeak is None:
            _espeak = Espeak(voice, one_shot=ONE_SHOT)
        return _espeak


def espeak_failed(exc: BaseException) -> None:
    """The library route failed: the ``espeak-ng`` program from now on (logged once)."""
    global _espeak_failed
    if not _espeak_failed:
        _espeak_failed = True
        log.warning("libespeak-ng 不可用，改用 espeak-ng 程序 (library route failed, using the "
                    "program): %s", exc)
        if _espeak is not None:
            _espeak.close()


if __name__ == "__main__":
    sys.exit(zygote_main(sys.argv[1] if len(sys.argv) > 1 else "cmn-latn-pinyin"))
