"""espeak-ng and SoX through their libraries (callbot.speech.native): the prompts a call plays are
byte for byte the files the ``espeak-ng`` and ``sox`` programs write, for every prompt a process
renders (the library keeps state between syntheses: only a fresh copy per prompt gives the
program's samples), slowed copies included; a zygote that died is started again; with the
libraries turned off the programs render as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callbot.speech import native
from callbot.speech.tts import EspeakTts

pytestmark = [pytest.mark.speech]

TEXTS = ("王伟芳您好，这里是社区居委会。我们正在为居民登记预约口罩。",
         "请问您家需要预约口罩吗？需要请说“需要”，或者按1；不需要请说“不需要”，或者按2。",
         "好的", "李芳静您好")

_RENDER = """
import sys
from pathlib import Path
from callbot.speech.tts import EspeakTts
out = Path(sys.argv[1])
e = EspeakTts()
texts = sys.argv[2:]
for rep in range(2):  # every text twice: the 2nd render of one text in one process too
    for i, text in enumerate(texts):
        for rate in (-10, 0):
            d = out / f"{rep}-{i}-{rate}.wav"
            e.synthesize(text, d, voice="cmn-latn-pinyin", rate=rate, volume=0)
            e.derive(d, out / f"{rep}-{i}-{rate}-slow.wav", rate=rate - 10, from_rate=rate)
from callbot.speech import native
print("espeak", native._espeak is not None and native._espeak.proc is not None,
      "sox", native._sox is not None)
"""


def _render_all(out: Path, native_on: bool) -> str:
    import os

    out.mkdir()
    env = dict(os.environ, CALLBOT_NATIVE_AUDIO="1" if native_on else "0")
    done = subprocess.run([sys.executable, "-c", _RENDER, str(out), *TEXTS], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip()


def test_library_prompts_are_the_programs_files(tmp_path: Path) -> None:
    """16 prompts and their slowed copies rendered in one process through the libraries are
    the programs' files, byte for byte (the 2nd and later syntheses of one library instance
    are not: the zygote forks a fresh one per prompt)."""
    said = _render_all(tmp_path / "lib", True)
    assert said == "espeak True sox True"  # the libraries did render
    assert _render_all(tmp_path / "cli", False) == "espeak False sox False"
    files = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert len(files) == 2 * len(TEXTS) * 2 * 2
    assert sorted(p.name for p in (tmp_path / "lib").iterdir()) == files
    differ = [f for f in files
              if (tmp_path / "lib" / f).read_bytes() != (tmp_path / "cli" / f).read_bytes()]
    assert differ == []


def test_one_library_instance_drifts_so_each_prompt_gets_a_fresh_one() -> None:
    """Why the zygote: in one library instance the same text said twice gives other samples
    the second time (the program's are those of the first)."""
    lib = native._Library("cmn-latn-pinyin")
    first = lib.synth("li3 fang1 jing4 nin2 hao3", "cmn-latn-pinyin", 171, 100)
    second = lib.synth("li3 fang1 jing4 nin2 hao3", "cmn-latn-pinyin", 171, 100)
    assert first != second
    z = native.Espeak("cmn-latn-pinyin")
    try:
        assert [z.pcm("li3 fang1 jing4 nin2 hao3", "cmn-latn-pinyin", 171, 100)
                for _ in range(3)] == [first] * 3
    finally:
        z.close()


def test_a_zygote_that_died_is_started_again(tmp_path: Path) -> None:
    z = native.Espeak("cmn-latn-pinyin")
    try:
        a = z.pcm("hao3 de5", "cmn-latn-pinyin", 171, 100)
        assert z.proc is not None
        z.proc.kill()
        z.proc.wait()
        assert z.pcm("hao3 de5", "cmn-latn-pinyin", 171, 100) == a
        with pytest.raises(OSError):
            z.pcm("hao3 de5", "no-such-voice", 171, 100)
        assert z.pcm("hao3 de5", "cmn-latn-pinyin", 171, 100) == a  # the zygote lives on
    finally:
        z.close()


def test_libsox_conversion_is_the_sox_programs(tmp_path: Path) -> None:
    """A staff-like WAV at 22.05 kHz through the 8 kHz conversion (highpass, gain, rate,
    dither) and tempo: libsox's files are the program's, run after run."""
    from callbot.speech.audio import convert_to_8k

    src = tmp_path / "src.wav"
    subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", str(src), "--",
                    EspeakTts.to_pinyin(TEXTS[1])], check=True, capture_output=True)
    convert_to_8k(src, tmp_path / "prog.wav", gain_db=-3)
    lib = native.sox()
    assert lib is not None
    for i in range(3):
        lib.to_8k(src, tmp_path / f"lib{i}.wav", -3)
        assert (tmp_path / f"lib{i}.wav").read_bytes() == (tmp_path / "prog.wav").read_bytes()
    subprocess.run(["sox", "-R", "-V1", str(tmp_path / "prog.wav"), str(tmp_path / "slow.wav"),
                    "tempo", "-s", "0.8889"], check=True)
    lib.tempo(tmp_path / "prog.wav", tmp_path / "libslow.wav", 0.8889)
    assert (tmp_path / "libslow.wav").read_bytes() == (tmp_path / "slow.wav").read_bytes()


def test_a_render_child_says_its_one_prompt_through_the_library_without_a_zygote(
        tmp_path: Path) -> None:
    """``python -m callbot.speech.render_child`` (a line process's cache miss) renders its one
    prompt in the library itself, the program's bytes, and starts no zygote for it."""
    import json
    import os

    job = {"engine": "espeak", "text": TEXTS[0], "voice": "cmn-latn-pinyin", "rate": -10,
           "volume": 0}
    for name, on in (("lib.wav", "1"), ("prog.wav", "0")):
        env = dict(os.environ, CALLBOT_NATIVE_AUDIO=on)
        code = ("import runpy, sys; from callbot.speech import native; "
                "native.Espeak._start = lambda self: sys.exit('zygote started'); "
                "runpy.run_module('callbot.speech.render_child', run_name='__main__')")
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120,
                       input=json.dumps(dict(job, path=str(tmp_path / name))).encode())
    assert (tmp_path / "lib.wav").read_bytes() == (tmp_path / "prog.wav").read_bytes()
