"""Prompt rendering in a short-lived child process, for the line processes of ``callbot worker``.

A line process renders a prompt only when it was not rendered ahead (a cache miss). Rendering it
in-process imports edge-tts and aiohttp (tried first, even when the service is unreachable),
numpy and pypinyin (the espeak fallback): +80 MB measured, kept for the life of the process. Here
the cache, its locks, the engine-down marks and the fallback order stay in the line process
(``PromptRenderer.render``); only the synthesis of a missing prompt runs in a child
(``python -m callbot.speech.render_child``), which writes the cache file atomically as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from callbot.exceptions import SpeechError
from callbot.speech.tts import EdgeTts, EspeakTts, PromptRenderer, TtsEngine, synthesize_file

CHILD_TIMEOUT_S = 120.0
"""Longest a child may take to render one prompt (s); edge-tts's own timeout is shorter."""
_ENGINES = {"edge": EdgeTts, "espeak": EspeakTts}


class ChildRenderer(PromptRenderer):
    """A ``PromptRenderer`` whose missing prompts are synthesised by a child process (the built-in
    engines; any other engine in this process, as before)."""

    @classmethod
    def like(cls, other: PromptRenderer, engines: list[TtsEngine] | None = None) -> ChildRenderer:
        """The same engines (or *engines*), cache, voice, rate, volume and shared cache."""
        return cls(engines or other.engines, other.cache_dir, voice=other.voice, rate=other.rate,
                   volume=other.volume, shared=other.shared)

    def _synthesize(self, engine: TtsEngine, text: str, path: Path, voice: str, rate: int,
                    volume: int) -> None:
        if _ENGINES.get(engine.name) is not type(engine):
            super()._synthesize(engine, text, path, voice, rate, volume)
            return
        job = {"engine": engine.name, "text": text, "path": str(path), "voice": voice,
               "rate": rate, "volume": volume}
        try:
            done = subprocess.run([sys.executable, "-m", "callbot.speech.render_child"],
                                  input=json.dumps(job, ensure_ascii=False).encode(),
                                  capture_output=True, timeout=CHILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpeechError(f"提示音合成进程失败 (render child failed): {exc}") from exc
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip().splitlines()
            raise SpeechError(why[-1] if why else f"render child exited with {done.returncode}")


def main() -> int:
    """Render one prompt described on stdin (JSON) into its cache path; the last line of stderr
    says why not."""
    job: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    from callbot.speech import native

    native.ONE_SHOT = True  # one prompt: espeak-ng's library here, no zygote for it
    try:
        engine = _ENGINES[job["engine"]]()
        synthesize_file(engine, job["text"], Path(job["path"]), job["voice"], int(job["rate"]),
                        int(job["volume"]))
    except SpeechError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
