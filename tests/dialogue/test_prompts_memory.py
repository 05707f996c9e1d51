"""A call's prompts cost a line process next to nothing while the call runs: the rendered WAVs
stay in the cache on disk and are read back when a batch is first joined (every line process runs
3–4 calls at once; the mask script's prompts are ~4 MB of PCM)."""

from __future__ import annotations

import gc
import tracemalloc
import wave
from pathlib import Path

from callbot.config import load_settings
from callbot.dialogue import DialogueEngine, Say
from callbot.prompts import Prompts, prompt_key
from callbot.script import load_script
from callbot.speech.tts import make_tts


def _pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        return w.readframes(w.getnframes())


def test_prompts_of_a_call_hold_no_audio_and_batches_say_every_prompt(data_dir, tmp_path) -> None:
    tts = make_tts(load_settings(), engine="espeak")
    script = load_script("mask_reservation")
    engine = DialogueEngine(script, {"姓名": "张阿姨"})
    texts = engine.prompts()
    Prompts(tts, texts, tmp_path, rate=script.rate)  # renders into the cache (not measured)
    audio_bytes = sum(len(_pcm(Path(tts.render(t, rate=script.rate)))) for t in set(texts))
    assert audio_bytes > 1_000_000, audio_bytes  # what holding the PCM would cost

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        prompts = Prompts(tts, texts, tmp_path, rate=script.rate)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 200_000, f"{held} bytes held by one call's prompts ({audio_bytes} of audio)"

    opening = tuple(prompt_key(a) for a in engine.start() if isinstance(a, Say))
    assert len(opening) >= 2
    path, seconds = prompts.batch(opening)
    joined = b"".join(_pcm(prompts.files[t]) for t in opening)
    assert _pcm(path) == joined
    assert abs(seconds - len(joined) / 16000) < 1e-6
    assert abs(sum(prompts.duration(t) for t in opening) - seconds) < 1e-6
    assert prompts.batch(opening) == (path, seconds)  # joined once per call


def test_a_prompt_removed_from_the_cache_mid_call_is_rendered_again(data_dir, tmp_path) -> None:
    tts = make_tts(load_settings(), engine="espeak")
    prompts = Prompts(tts, ["您好，这里是居委会。", "再见。"], tmp_path)
    first = prompts.files["您好，这里是居委会。"]
    length = prompts.duration("您好，这里是居委会。")
    first.unlink()  # someone cleared the prompt cache while the call was up
    path, seconds = prompts.batch(("您好，这里是居委会。", "再见。"))
    assert first.is_file() and abs(seconds - length - prompts.duration("再见。")) < 1e-6
    assert len(_pcm(path)) == round(seconds * 16000)
