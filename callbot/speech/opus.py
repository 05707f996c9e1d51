"""Ogg Opus for stored speech (reply audio, whole calls): 8 kHz speech in a few kB/s.

Its own module so that both ``callbot.recordings`` (which stores the audio, and asks the host's
speech process to compress it) and ``callbot.speech.service`` (which compresses it for the line
processes) use it without importing each other. numpy and libsndfile load only when called.

Encoding goes straight to the system's libopus (``libopus.so.0``, through ctypes) in
``OPUS_APPLICATION_VOIP`` at complexity ``COMPLEXITY``, at the bitrate libsndfile gives the same
level, with this module's own Ogg pages: libsndfile's Ogg Opus writer (complexity 10, its own
analysis) cost ~12 CPU-ms per second of 8 kHz speech, this ~3 (docs/benchmarks.md, "CPU per
call, stop 20"), and the speech process compresses every reply. Without libopus libsndfile
encodes as before. Decoding is libsndfile's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import struct
import threading
from typing import Any

from callbot import defaults
from callbot.exceptions import MissingExtraError, RecordingError


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:  # the speech extra (line workers) has it
        raise MissingExtraError("soundfile", "speech") from exc
    return soundfile


COMPLEXITY = 5
"""libopus encoder complexity (0–10; libsndfile uses 10): ~3 CPU-ms per second of 8 kHz speech
here against ~5 at 10, the same size, and the recogniser hears every reply clip after it."""
FRAME_MS = 20
RATES = (8000, 12000, 16000, 24000, 48000)
"""The input rates Opus takes (libsndfile refuses the others too, with its own message)."""
VENDOR = b"callbot libopus"


def encode(pcm: bytes, rate: int = defaults.SAMPLE_RATE,
           level: float = defaults.RECORDING_OPUS_LEVEL) -> bytes:
    """16-bit mono PCM → Ogg Opus bytes, in this process."""
    if not pcm:
        raise RecordingError("没有可保存的声音 (no audio to store)")
    lib = _libopus() if rate in RATES else None
    if lib is not None:
        return _encode_libopus(lib, pcm[: len(pcm) // 2 * 2], rate, level)
    return encode_libsndfile(pcm, rate, level)


def encode_libsndfile(pcm: bytes, rate: int = defaults.SAMPLE_RATE,
                      level: float = defaults.RECORDING_OPUS_LEVEL) -> bytes:
    """``encode`` through libsndfile (no libopus on this host, or a rate Opus does not take)."""
    import numpy as np

    if not pcm:
        raise RecordingError("没有可保存的声音 (no audio to store)")
    sf = _soundfile()
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="OGG", subtype="OPUS", compression_level=level)
    return buf.getvalue()


def decode(data: bytes) -> tuple[bytes, int]:
    """Stored audio → (16-bit mono PCM, sample rate)."""
    sf = _soundfile()
    samples, rate = sf.read(io.BytesIO(data), dtype="int16")
    if samples.ndim > 1:
        samples = samples[:, 0]
    return samples.astype("<i2").tobytes(), int(rate)


# --- libopus and Ogg pages ---------------------------------------------------------------------

_OPUS_APPLICATION_VOIP = 2048
_OPUS_SET_BITRATE = 4002
_OPUS_SET_COMPLEXITY = 4010
_OPUS_SET_SIGNAL = 4024
_OPUS_SIGNAL_VOICE = 3001
_OPUS_GET_LOOKAHEAD = 4027
_lib: Any = None
_lib_lock = threading.Lock()


def _libopus() -> Any:
    """The system's libopus through ctypes, or None (not installed: libsndfile encodes)."""
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = False
            name = ctypes.util.find_library("opus") or "libopus.so.0"
            try:
                lib = ctypes.CDLL(name)
                lib.opus_encoder_create.restype = ctypes.c_void_p
                lib.opus_encoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.c_int,
                                                    ctypes.POINTER(ctypes.c_int)]
                lib.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
                lib.opus_encode.restype = ctypes.c_int32
                lib.opus_encode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                            ctypes.c_char_p, ctypes.c_int32]
                _lib = lib
            except (OSError, AttributeError):
                pass
        return _lib or None


def bitrate_for(level: float) -> int:
    """The bitrate libsndfile's Ogg Opus writer gives a compression level (0 best … 1 smallest):
    256 kbit/s at 0, 6 kbit/s at 1, linear between (10.5 kbit/s at the default 0.98)."""
    level = min(1.0, max(0.0, float(level)))
    return int(round(256000 - 250000 * level))


def _encode_libopus(lib: Any, pcm: bytes, rate: int, level: float) -> bytes:
    err = ctypes.c_int()
    enc = lib.opus_encoder_create(rate, 1, _OPUS_APPLICATION_VOIP, ctypes.byref(err))
    if not enc or err.value != 0:
        raise RecordingError(f"Opus 编码器无法创建 (opus_encoder_create failed: {err.value})")
    ctl = lib.opus_encoder_ctl
    try:
        for request, value in ((_OPUS_SET_BITRATE, bitrate_for(level)),
                               (_OPUS_SET_COMPLEXITY, COMPLEXITY),
                               (_OPUS_SET_SIGNAL, _OPUS_SIGNAL_VOICE)):
            ctl(ctypes.c_void_p(enc), ctypes.c_int(request), ctypes.c_int(value))
        lookahead = ctypes.c_int32()
        ctl(ctypes.c_void_p(enc), ctypes.c_int(_OPUS_GET_LOOKAHEAD), ctypes.byref(lookahead))
        to48 = 48000 // rate
        pre_skip = lookahead.value * to48
        n = rate * FRAME_MS // 1000
        samples = len(pcm) // 2
        # the lookahead's worth of silence more, so the last real samples come out of the encoder
        total = samples + lookahead.value
        frames = -(-total // n)
        padded = pcm + bytes((frames * n - samples) * 2)
        out = ctypes.create_string_buffer(4000)
        packets = []
        for i in range(frames):
            got = lib.opus_encode(enc, padded[i * n * 2:(i + 1) * n * 2], n, out, 4000)
            if got < 0:
                raise RecordingError(f"Opus 编码失败 (opus_encode failed: {got})")
            packets.append(out.raw[:got])
    finally:
        lib.opus_encoder_destroy(enc)
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, rate, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", len(VENDOR)) + VENDOR + struct.pack("<I", 0)
    end_granule = pre_skip + samples * to48
    return _ogg(head, tags, packets, n * to48, end_granule)


def _ogg(head: bytes, tags: bytes, packets: list[bytes], step: int, end_granule: int) -> bytes:
    """An Ogg stream: the two header pages, then the packets (each < 255 × 255 bytes), as many
    to a page as its 255 lacing values take; the last page ends the stream at *end_granule*."""
    serial = 0x63616C6C  # "call"
    pages = [_page(serial, 0, 0x02, 0, [head]), _page(serial, 1, 0x00, 0, [tags])]
    seq, granule, i = 2, 0, 0
    while i < len(packets):
        batch: list[bytes] = []
        lacing = 0
        while i < len(packets) and lacing + len(packets[i]) // 255 + 1 <= 255:
            lacing += len(packets[i]) // 255 + 1
            batch.append(packets[i])
            i += 1
        granule += step * len(batch)
        last = i >= len(packets)
        pages.append(_page(serial, seq, 0x04 if last else 0x00,
                           end_granule if last else granule, batch))
        seq += 1
    return b"".join(pages)


def _page(serial: int, seq: int, flags: int, granule: int, packets: list[bytes]) -> bytes:
    lacing = bytearray()
    for p in packets:
        lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
    page = bytearray(b"OggS" + struct.pack("<BBqIIIB", 0, flags, granule, serial, seq, 0,
                                            len(lacing)) + lacing + b"".join(packets))
    struct.pack_into("<I", page, 22, _crc(page))
    return bytes(page)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def _crc(data: bytes | bytearray) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, no final xor)."""
    crc, table = 0, _CRC
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc
