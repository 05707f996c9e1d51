"""KWS on a worse line: how often unrelated real speech is taken as an answer (false answers) and
how often the reply clips are still understood, when the audio is quieter or louder (clipped) and
carries white noise — per recogniser setting.

    python bench/asr_noise.py [--configs 0.25:0.3:inf,0.35:0.35:2.0] [--seeds 3]

A config is THRESHOLD:SHORT_THRESHOLD:SHORT_MAX_S (KwsEngine's threshold, short_threshold and
short_max_s; ``inf`` turns the one-syllable rule off). The phrase lists are the ones the built-in
scripts' questions listen with (``intents.phrases``), ended by the dialogue's 0.3 s of silence,
as on a call. False answers need ../shared/audio/real (real recordings, not in the repo).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callbot import defaults, intents  # noqa: E402
from callbot.speech import models  # noqa: E402
from callbot.speech.asr import Final  # noqa: E402
from callbot.speech.audio import frames, line_noise, read_8k  # noqa: E402
from callbot.speech.kws import KwsEngine  # noqa: E402

REPLIES = REPO / "callbot" / "data" / "replies"
REAL = REPO.parent / "shared" / "audio" / "real"
ASKS = [("yes", "no", "repeat"), ("quantity", "no", "repeat"), ("ok", "needs_help", "repeat"),
        ("yes", "quantity", "no", "later", "repeat", "wrong_person"),
        ("ok", "needs_help", "later", "repeat", "wrong_person")]
GAINS = (0.5, 1.0, 2.0)
NOISE = (None, -60.0, -50.0, -45.0, -40.0)


def heard(engine: KwsEngine, pcm: bytes, wanted: tuple[str, ...]) -> intents.Answer | None:
    stream = engine.stream(intents.phrases(list(wanted)),
                           trailing_silence_s=defaults.DIALOGUE_END_SILENCE_S)
    final = None
    for f in frames(b"\0" * 8000 + pcm + b"\0" * 48000):
        for ev in stream.accept(f):
            if isinstance(ev, Final):
                final = ev
        if stream.done:
            break
    else:
        final = next((e for e in stream.finish() if isinstance(e, Final)), final)
    return intents.classify(final.text, list(wanted)) if final else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="0.25:0.3:inf,0.35:0.35:inf,0.35:0.35:2.0,0.4:0.4:2.0")
    ap.add_argument("--seeds", type=int, default=3, help="noise draws per level")
    args = ap.parse_args()
    model = models.find_model(models.DEFAULT_MODEL["kws"], kind="kws")
    said = json.loads((REPLIES / "transcripts.json").read_text(encoding="utf-8"))
    clips = {s: read_8k(REPLIES / f"{s}.wav") for s in said}
    real = {p.name: read_8k(p) for p in sorted(REAL.glob("*.wav"))} if REAL.is_dir() else {}
    lines = [(g, n, s) for g, n in itertools.product(GAINS, NOISE)
             for s in (range(args.seeds) if n is not None else [0])]
    print(f"{len(lines)} line conditions (gain x noise dBFS x seed); model {model.name}")
    if not real:
        print(f"(no {REAL}: false answers not measured)")
    print("| threshold | one-syllable threshold | one-syllable max reply | false answers on real "
          "speech | replies understood | CPU s |")
    print("|---|---|---|---|---|---|")
    for spec in args.configs.split(","):
        th, sth, smax = (float(v) for v in spec.split(":"))
        engine = KwsEngine(model, threshold=th, short_threshold=sth, short_max_s=smax)
        t = time.process_time()
        false: collections.Counter[str] = collections.Counter()
        n_false = 0
        for pcm, wanted, line in itertools.product(real.values(), ASKS, lines):
            n_false += 1
            a = heard(engine, line_noise(pcm, gain=line[0], noise_dbfs=line[1], seed=line[2]),
                      wanted)
            if a is not None:
                false[f"{a.intent}:{a.text}"] += 1
        ok = n_ok = 0
        missed: collections.Counter[str] = collections.Counter()
        for stem, wanted in itertools.product(clips, ASKS):
            meant = intents.classify(said[stem], list(wanted))
            spoken = [p for p in intents.phrases(list(wanted)) if p in said[stem]]
            if meant is None or not spoken:  # the question does not listen for these words
                continue
            for line in lines:
                n_ok += 1
                a = heard(engine, line_noise(clips[stem], gain=line[0], noise_dbfs=line[1],
                                             seed=line[2]), wanted)
                if a is not None and (a.intent, a.value) == (meant.intent, meant.value):
                    ok += 1
                else:
                    missed[f"{stem}→{a.intent if a else None}"] += 1
        fa = f"{sum(false.values())}/{n_false}" if real else "—"
        print(f"| {th} | {sth} | {smax} s | {fa} {dict(false) or ''} | {ok}/{n_ok} "
              f"{dict(missed) or ''} | {time.process_time() - t:.0f} |", flush=True)


if __name__ == "__main__":
    main()
