"""The host's speech process (callbot.speech.service): replies decoded there are what the same
engine hears in-process; line processes read the lexicon from its pinyin memo without loading
pypinyin; ``callbot worker`` with a missing model stops at once with one message that names
the command to run, instead of restarting its children forever."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from callbot.speech.audio import read_8k
from tests.conftest import REPLIES, REPO, callbot_cmd, env_for_subprocess
from tests.conftest import speech_process as running_speech_process
from tests.speech.conftest import final_of, run_stream

pytestmark = [pytest.mark.speech]


@pytest.fixture(scope="module")
def speech_process(tmp_path_factory: pytest.TempPathFactory, kws_model_dir: Path):
    """A real speech process on the shipped model, for a throwaway data dir."""
    from callbot.config import load_settings
    from callbot.speech.service import address_for

    data = tmp_path_factory.mktemp("speech") / "var"
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(data),
                             CALLBOT_MODELS_DIR=str(kws_model_dir.parent))
    settings = load_settings(env)
    address = address_for(settings.data_dir)
    with running_speech_process(env, address):
        yield address, settings


@pytest.mark.parametrize("clip,expect,want", [("xuyao.wav", ["需要", "不需要"], "需要"),
                                              ("buxuyao.wav", ["需要", "不需要"], "不需要"),
                                              ("liangge.wav", [], None)])
def test_remote_reply_is_heard_as_in_process(speech_process, pinyin_engine_local, clip, expect,
                                             want) -> None:
    from callbot.speech.service import RemoteAsr

    address, _ = speech_process
    remote = RemoteAsr(address)
    assert (remote.name, remote.model_name) == (pinyin_engine_local.name,
                                                pinyin_engine_local.model_name)
    pcm = read_8k(REPLIES / clip)
    got = final_of(run_stream(remote.stream(expect, trailing_silence_s=0.3), pcm))
    local = final_of(run_stream(pinyin_engine_local.stream(expect, trailing_silence_s=0.3), pcm))
    assert (got.text, got.match, got.pinyin) == (local.text, local.match, local.pinyin)
    assert got.pinyin and got.match == want
    assert got.audio == local.audio and got.start_s == local.start_s


def test_silence_opens_no_connection(speech_process) -> None:
    """An idle line (nobody speaks) costs the speech process nothing: NoInput locally."""
    from callbot.speech.asr import NoInput
    from callbot.speech.service import RemoteAsr

    stream = RemoteAsr(speech_process[0]).stream(["需要"], no_input_s=1.0)
    ev = final_of(run_stream(stream, b"", lead_s=1.5, tail_s=0))
    assert isinstance(ev, NoInput)
    assert stream._decoder._conn is None


def test_line_process_classifies_from_the_memo_without_pypinyin(speech_process) -> None:
    """The memo the speech process wrote lets a fresh process load the lexicon and classify a
    recogniser's pinyin without importing pypinyin (57 MB per process)."""
    from callbot.speech.service import pinyin_memo_path

    memo = pinyin_memo_path(speech_process[1])
    assert memo.is_file()
    code = (
        "import sys\n"
        "from callbot import intents, pinyin\n"  # imported first, as a line process may
        f"assert pinyin.load_memo({str(memo)!r}) > 500\n"
        "a = intents.classify('', ['yes', 'no', 'quantity'], pinyin='bù xū yào')\n"
        "b = intents.classify('', ['yes', 'no', 'quantity'], pinyin='liǎng gè')\n"
        "print(a.intent, b.intent, b.value, 'pypinyin' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env_for_subprocess(), cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["no", "quantity", "2", "False"]


def test_line_process_stores_reply_audio_without_numpy(speech_process) -> None:
    """A line process's reply audio is compressed by the speech process: the Ogg Opus it gets
    back is the reply (same length when decoded), and numpy and libsndfile (~13 MB a process)
    were never loaded there."""
    from callbot import recordings
    from callbot.speech.service import ENV

    address = speech_process[0]
    pcm = read_8k(REPLIES / "xuyao.wav")
    raw = Path(speech_process[1].data_dir) / "xuyao.raw"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(pcm)
    code = (
        "import sys\n"
        "from callbot import recordings\n"
        f"data = recordings.encode(open({str(raw)!r}, 'rb').read())\n"
        "sys.stdout.buffer.write(data)\n"
        "print('numpy' in sys.modules, 'soundfile' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=REPO,
                         env=env_for_subprocess(**{ENV: "@" + address[1:]}))
    assert out.returncode == 0, out.stderr.decode()
    assert out.stderr.decode().split()[-2:] == ["False", "False"]
    back, rate = recordings.decode(out.stdout)
    assert rate == 8000
    assert abs(len(back) - len(pcm)) < 0.05 * 16000, (len(back), len(pcm))


def test_line_process_beside_the_speech_process_never_builds_the_lexicon(speech_process,
                                                                          tmp_path) -> None:
    """A line process beside the host's speech process does not read the intent lexicon when it
    starts (~10 MB and ~0.26 CPU-s each, 34 processes at 100 lines, stop 20): its replies are
    classified in the speech process, which holds the lexicon already."""
    from callbot.speech.service import ENV

    address, settings = speech_process
    sip = tmp_path / "sip.conf"
    sip.write_text("[account]\nmode = direct\ntransport = udp\nbind = 127.0.0.1\n"
                   "local_port = 0\ndomain = 127.0.0.1\nusername = callbot\n\n"
                   "[dial]\nuri = sip:{number}@127.0.0.1:9\n", encoding="utf-8")
    code = (
        "from callbot import intents\n"
        "from callbot.campaign.runner import SessionRunner\n"
        "from callbot.config import load_settings\n"
        "runner = SessionRunner(load_settings(), 1)\n"
        "print('lexicon', intents.lexicon.cache_info().currsize)\n"
        "runner.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, cwd=REPO,
                         env=env_for_subprocess(**{ENV: "@" + address[1:]},
                                                CALLBOT_DATA_DIR=str(settings.data_dir),
                                                CALLBOT_SIP_CONF=str(sip)))
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert "lexicon 0" in out.stdout.decode(), out.stdout.decode()


_DIALOGUE = """
import json, sys
from callbot import intents
from callbot.dialogue import DialogueEngine, Heard, Listen
from callbot.script import load_script
from callbot.speech.audio import read_8k
from callbot.speech.service import remote_from_env
from tests.speech.conftest import final_of, run_stream
asr = remote_from_env()
out = []
for clip in sys.argv[1:]:
    engine = DialogueEngine(load_script("welfare_check"), {"姓名": "张阿姨"})
    listen = next(a for a in engine.start() if isinstance(a, Listen))
    ev = final_of(run_stream(asr.stream(listen.expect, intents=listen.intents,
                                        trailing_silence_s=0.8), read_8k(clip)))
    acts = engine.on(Heard(ev.text, ev.confidence, ev.pinyin, remote=ev.answer))
    out.append([[t for t in engine.transcript if t["role"] == "callee"][-1],
                [repr(a) for a in acts]])
print(json.dumps({"got": out, "lexicon": intents.lexicon.cache_info().currsize,
                  "pypinyin": "pypinyin" in sys.modules}, ensure_ascii=False, default=str))
"""


@pytest.mark.parametrize("clips", [["emg_shuaile.wav", "help_xigai_slow.wav", "ok_couhe.wav",
                                    "stop_bielao.wav", "no_buyong.wav"]])
def test_a_line_process_understands_free_replies_without_the_lexicon(
        speech_process, pinyin_engine_local, clips) -> None:
    """Free replies heard through the speech process are classified there: a fresh process
    (as a line process) gets the same transcript lines — intent, value, urgent, pinyin — as a
    dialogue that classifies the same recogniser output itself, and never builds the lexicon
    nor loads pypinyin."""
    import json

    from callbot.dialogue import DialogueEngine, Heard, Listen
    from callbot.script import load_script
    from callbot.speech.service import ENV
    from tests.conftest import FIXTURES

    paths = [str(FIXTURES / "audio" / "free" / c) for c in clips]
    code = subprocess.run([sys.executable, "-c", _DIALOGUE, *paths], capture_output=True,
                          text=True, timeout=180, cwd=REPO,
                          env=env_for_subprocess(**{ENV: "@" + speech_process[0][1:]}))
    assert code.returncode == 0, code.stderr[-2000:]
    got = json.loads(code.stdout.strip().splitlines()[-1])
    assert got["lexicon"] == 0 and not got["pypinyin"], got
    want = []
    for path in paths:
        engine = DialogueEngine(load_script("welfare_check"), {"姓名": "张阿姨"})
        listen = next(a for a in engine.start() if isinstance(a, Listen))
        ev = final_of(run_stream(pinyin_engine_local.stream(listen.expect,
                                                            trailing_silence_s=0.8),
                                 read_8k(Path(path))))
        acts = engine.on(Heard(ev.text, ev.confidence, ev.pinyin))
        want.append([[t for t in engine.transcript if t["role"] == "callee"][-1],
                     [repr(a) for a in acts]])
    want = json.loads(json.dumps(want, ensure_ascii=False, default=str))
    strip = [[{k: v for k, v in line.items() if k != "t"}, acts] for line, acts in got["got"]]
    assert strip == [[{k: v for k, v in line.items() if k != "t"}, acts] for line, acts in want]
    assert [line.get("intent") for line, _ in want][:2] == ["emergency", "needs_help"], want


@pytest.mark.parametrize("lines", [2, 6])
def test_worker_with_a_missing_model_fails_fast_with_one_message(tmp_path: Path,
                                                                 lines: int) -> None:
    """One process (--lines 2) or a supervisor with its speech process (--lines 6): exit 78 at
    once, the message names the model and the command that fetches it, nothing restarts."""
    env = env_for_subprocess(CALLBOT_DATA_DIR=str(tmp_path / "var"),
                             CALLBOT_SIP_CONF=str(REPO / "sip.conf"),
                             CALLBOT_ASR_ENGINE="vosk", CALLBOT_ASR_MODEL="vosk-model-small-cn-0.22",
                             CALLBOT_MODELS_DIR=str(tmp_path / "models"))
    t0 = time.monotonic()
    out = subprocess.run(callbot_cmd("worker", "--lines", str(lines)), capture_output=True,
                         text=True, env=env, timeout=120)
    took = time.monotonic() - t0
    assert out.returncode == 78, (out.returncode, out.stderr[-2000:])
    assert "callbot models download vosk-model-small-cn-0.22" in out.stderr
    assert "restarting" not in out.stderr
    assert took < 60


def test_a_reply_that_ends_while_its_audio_decodes_is_answered_from_all_of_it(
        pinyin_engine_local) -> None:
    """Under load the decode thread is still decoding a reply's earlier audio when the line sends
    the rest and the end. The answer must come from all the audio: it came from the first part
    only ('不' for 不需要, a different answer) until the end was read with the audio."""
    import threading

    from callbot.speech.service import _DecodeThread

    pcm = read_8k(REPLIES / "buxuyao.wav")
    half = len(pcm) // 2 // 2 * 2
    lead = b"\0" * 8000

    class Gated:  # the real decoder; its first feed waits until the test has sent the rest
        def __init__(self, dec) -> None:  # type: ignore[no-untyped-def]
            self.dec, self.entered, self.go = dec, threading.Event(), threading.Event()

        def feed(self, data: bytes) -> None:
            if not self.entered.is_set():
                self.entered.set()
                assert self.go.wait(10)
            self.dec.feed(data)

        def result(self):  # type: ignore[no-untyped-def]
            return self.dec.result()

    thread = _DecodeThread(pinyin_engine_local, 0)
    thread.start()
    reply = thread.open(["需要", "不需要"])
    reply.dec = gated = Gated(reply.dec)
    thread.add(reply, lead + pcm[:half])
    assert gated.entered.wait(10)
    thread.add(reply, pcm[half:] + b"\0" * 16000)
    thread.end(reply)
    gated.go.set()
    assert reply.done.wait(30)
    local = final_of(run_stream(pinyin_engine_local.stream(["需要", "不需要"],
                                                           trailing_silence_s=0.3), pcm))
    assert reply.answer is not None and "result" in reply.answer, reply.answer
    text, match, _conf, pinyin = reply.answer["result"][:4]
    assert match == "不需要", reply.answer
    assert pinyin == local.pinyin, (pinyin, local.pinyin)


def test_peer_of_a_unix_socket_is_this_user() -> None:
    """The check both services make (callbot.peer) reads the other end's uid from the kernel."""
    import os
    import socket

    from callbot import peer

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert peer.peer_uid(a) == os.getuid() and peer.trusted(a)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:  # no peer credentials
        assert not peer.trusted(tcp)


@pytest.mark.parametrize("silence", [0.3, 0.8])
def test_a_reply_is_flushed_with_tail_s_of_quiet_in_all(pinyin_engine_local, silence) -> None:
    """The decoder is flushed with PINYIN_TAIL_S of quiet after the last voiced frame, counting
    the reply's own end silence it decoded (before, 0.5 s of zeros came on top of it: 0.8–1.0 s
    decoded, ~20 % of a reply's CPU). The reply is heard the same (bench/hear.py: every figure
    unchanged at 0.3 and 0.8 s; the 27 reply clips' pinyin identical)."""
    from callbot import defaults
    from callbot.speech.pinyin_asr import PinyinDecoder

    decoders: list[PinyinDecoder] = []
    real = PinyinDecoder.__init__

    def keep(self: PinyinDecoder, *a: Any, **kw: Any) -> None:
        real(self, *a, **kw)
        decoders.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PinyinDecoder, "__init__", keep)
        got = final_of(run_stream(pinyin_engine_local.stream(["需要", "不需要"],
                                                             trailing_silence_s=silence),
                                  read_8k(REPLIES / "xuyao.wav")))
    assert got.match == "需要"
    (dec,) = decoders
    quiet = dec._samples / 16000 - dec._voiced_end
    assert defaults.PINYIN_TAIL_S - 0.03 <= quiet <= defaults.PINYIN_TAIL_S + 0.03, quiet
