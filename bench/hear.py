"""Hearing free replies: accuracy per intent, trouble heard as fine, other talk taken as an answer.

    python bench/hear.py [--silences 0.3,0.8] [--kws]

Every reply of the free set (tests/fixtures/audio/free: 28 tuned, 21 held-out, 12 newer held-out
(tuned on since), 16 fresh held-out phrasings and the lead's 31 (reported apart) × clean /
slowed+lowered / sped-up+noisy, 12 long unrelated sentences) and the shipped reply clips
are streamed frame by frame through the same stream a call uses, ended after each
end-of-reply silence of --silences, and classified over every intent (as `callbot listen`
without --expect does). Prints, per silence:
  * understood per intent, per part of the set (right / all), and per voice;
  * wrong answers (another intent or value: a misunderstanding that would be kept);
  * needs_help / emergency heard as ok, yes or no (goal 0);
  * unrelated speech (the 12 sentences × 3 voices, the real recordings in ../shared/audio/real,
    喂 and 再见) taken as an answer (goal 0);
  * replies cut short: more than one Final for one reply (the end silence fell in a pause);
  * per part: wrong (kept as another answer) and asked again (nothing understood);
  * classify's cost per reply (ms; the same call a line makes after each reply).
With --kws, also the keyword spotter with the phrase lists of the two built-in questions, alone
and as a fallback when the transcript answers nothing (the measurement behind docs/speech.md's
decision). RTF per stream: bench/asr.py --engines pinyin; reply → prompt: bench/dialogue.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callbot import intents  # noqa: E402
from callbot.speech.asr import Final  # noqa: E402
from callbot.speech.audio import frames, read_8k  # noqa: E402

FREE = REPO / "tests" / "fixtures" / "audio" / "free"
REPLIES = REPO / "callbot" / "data" / "replies"
REAL = REPO.parent / "shared" / "audio" / "real"
VARIANTS = {"": "clean", "_slow": "slow", "_fast": "fast+noise"}
PARTS = ("tuned", "held_out", "held_out_new", "held_out_fresh", "held_out_lead", "held_out_lead2",
         "held_out_hear", "held_out_lead3", "held_out_lead4", "held_out_hear_b", "held_out_hear_a",
         "held_out_lead5", "held_out_hear_c", "held_out_lead6")
APART = ("held_out_lead", "held_out_lead2", "held_out_hear", "held_out_lead3", "held_out_lead4",
         "held_out_hear_b", "held_out_hear_a", "held_out_lead5", "held_out_hear_c",
         "held_out_lead6")
"""The free set's parts: the lexicon was tuned on the first. ``held_out`` never was;
``held_out_new`` was added later to see whether changes made since generalise, and its misses
were then worked on (by families, not its sentences): no longer held out. ``held_out_fresh`` was
written and synthesised before that work (its errors were then worked on by general rules in
stop 18: no longer wholly held out). ``held_out_lead`` was written by
the lead without looking at the lexicon (stop 18); its failures were then worked on (helper hear2:
general rules and reply families), so it is seen, no longer blind (the lead keeps another set). It
is reported apart and left out of the overall figure, so that the figures before it stay
comparable; its two unrelated sentences are counted with the other unrelated speech and named apart.
``held_out_lead2``, the lead's second set, was kept off main until every classifier change of stop
18 had landed and measured once on that code: the one blind figure; reported apart as well.
``held_out_hear``: helper hear's own phrasings of stop 19, written beside the rules they exercise
(not blind), reported apart too. ``held_out_lead3``: the lead's third set, measured on main
before stop 19's classifier work (58/93), then the kinds of its misses (not its sentences) were
told to helper hear: semi-blind. ``held_out_lead4``: the lead's fourth, written after every
classifier change of stop 19 had landed and measured once on that code: blind. Both apart.
``held_out_hear_b``: helper hear-b's own phrasings of stop 20 (the offer's answers and the
call-control intents), written beside the lexicon families they exercise: not blind; apart.
``held_out_hear_a``: helper hear-a's welfare phrasings of stop 20, written beside the families they
exercise (not blind), apart too. ``held_out_lead5``: the lead's fifth (stop 20), written before
the stop's classifier work, kept off main and measured on main before it (88.6 %) and after it
(95.2 %): blind; apart. ``held_out_hear_c``: helper hear-c's own phrasings of stop 21 (welfare,
the offer, the call-control intents), written and measured on main before its rules: not blind;
apart."""
QUESTIONS = {  # what the built-ins' first questions listen for (intents.ALWAYS included)
    "mask": ["yes", "no", "quantity", "later", *intents.ALWAYS],
    "welfare": ["ok", "needs_help", "later", *intents.ALWAYS],
}


def finals(engine, pcm: bytes, silence_s: float, expect: list[str] | None = None) -> list[Final]:
    """Stream *pcm* (then 3 s of quiet) as one call would: a new stream after each Final."""
    quiet = b"\0" * 320
    out: list[Final] = []
    stream = engine.stream(expect or [], trailing_silence_s=silence_s, no_input_s=3.0)
    for frame in [*frames(pcm), *[quiet] * 150]:
        for ev in stream.accept(frame):
            if isinstance(ev, Final):
                out.append(ev)
        if stream.done:
            stream = engine.stream(expect or [], trailing_silence_s=silence_s, no_input_s=3.0)
    for ev in stream.finish():
        if isinstance(ev, Final):
            out.append(ev)
    return out


CLASSIFY = [0.0, 0]
"""CPU seconds spent in intents.classify, and calls (the per-reply cost: keep it under 10 ms;
CPU time, so a loaded box does not inflate it)."""


def answer_of(fin: list[Final], wanted: list[str] | None = None) -> intents.Answer | None:
    """What the dialogue would take: the first Final that answers (a cut reply is asked on)."""
    for f in fin:
        t0 = time.process_time()
        got = intents.classify(f.text, wanted, pinyin=f.pinyin or None)
        CLASSIFY[0] += time.process_time() - t0
        CLASSIFY[1] += 1
        if got is not None:
            return got
    return None


def part_of(meta: dict, name: str) -> str | None:
    """The part of the free set a reply (STEM, STEM_slow, STEM_fast, or STEM@question) is in (by
    its transcript, not its stem's prefix: hear_ and hear_b_ are two parts)."""
    stem = name.split("@")[0]
    for v in VARIANTS:
        if v and stem.endswith(v):
            stem = stem[: -len(v)]
    return meta.get(stem, {}).get("set")


def key(a: intents.Answer | None) -> tuple | None:
    return (a.intent, a.value) if a else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--silences", default="0.3,0.8", help="end-of-reply silences to try, s")
    ap.add_argument("--kws", action="store_true", help="also measure the keyword spotter")
    args = ap.parse_args()
    from callbot.speech.pinyin_asr import PinyinEngine

    engine = PinyinEngine.load()
    meta = json.loads((FREE / "transcripts.json").read_text(encoding="utf-8"))
    clips = json.loads((REPLIES / "transcripts.json").read_text(encoding="utf-8"))
    audio = {stem + v: read_8k(FREE / f"{stem}{v}.wav") for stem in meta for v in VARIANTS}
    others = {f"clip:{s}": read_8k(REPLIES / f"{s}.wav") for s in clips}
    real = {f"real:{p.name}": read_8k(p) for p in sorted(REAL.glob("*.wav"))} if REAL.is_dir() else {}
    for silence in [float(x) for x in args.silences.split(",")]:
        t = time.perf_counter()
        per: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (part, intent) -> right, all
        per_voice: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        wrong, trouble_fine, cut, unrelated = [], [], [], []
        missed: defaultdict[str, list[str]] = defaultdict(list)  # per part: not understood (asked again)
        kept_wrong: defaultdict[str, int] = defaultdict(int)  # per part: kept as another answer
        for stem, m in meta.items():
            for v, voice in VARIANTS.items():
                fin = finals(engine, audio[stem + v], silence)
                got = answer_of(fin)
                if len(fin) > 1:
                    cut.append(stem + v)
                if m["set"] == "distractor" or m["intent"] is None:
                    if got is not None:
                        unrelated.append((stem + v, key(got)))
                    continue
                want = (m["intent"], m["value"])
                ok = key(got) == want
                per[(m["set"], m["intent"])][0] += ok
                per[(m["set"], m["intent"])][1] += 1
                per_voice[(m["set"], voice)][0] += ok
                per_voice[(m["set"], voice)][1] += 1
                if got is None:
                    missed[m["set"]].append(stem + v)
                if got is not None and not ok:
                    kept_wrong[m["set"]] += 1
                    wrong.append((stem + v, m["text"], key(got), " | ".join(f.pinyin for f in fin)))
                if m["intent"] in ("needs_help", "emergency") and got is not None \
                        and got.intent in ("ok", "yes", "no"):
                    trouble_fine.append((stem + v, key(got)))
        for name, pcm in {**real, "clip:wei": others["clip:wei"],
                          "clip:zaijian": others["clip:zaijian"]}.items():
            for q, wanted in QUESTIONS.items():
                got = answer_of(finals(engine, pcm, silence), wanted)
                if got is not None:
                    unrelated.append((f"{name}@{q}", key(got)))
        clip_right = sum(key(answer_of(finals(engine, pcm, silence))) == key(intents.classify(
            clips[name[5:]])) for name, pcm in others.items())
        wall = time.perf_counter() - t
        print(f"\n## end-of-reply silence {silence:g} s  ({wall:.0f} s wall)\n")
        print("| intent | tuned | held out | held out, new (tuned on since) | held out, fresh | "
              "held out, lead's | held out, lead's 2nd | hear's own | lead's 3rd | lead's 4th (blind) | "
              "hear-b's own | hear-a's own | lead's 5th (blind) | hear-c's own |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for intent in intents.INTENTS:
            cells = [per[(part, intent)] for part in PARTS]
            if any(c[1] for c in cells):
                print(f"| {intent} | " + " | ".join(f"{c[0]}/{c[1]}" for c in cells) + " |")
        for part in PARTS:
            r = sum(v[0] for k, v in per.items() if k[0] == part)
            n = sum(v[1] for k, v in per.items() if k[0] == part)
            if not n:
                continue
            voices = ", ".join(f"{voice} {per_voice[(part, voice)][0]}/{per_voice[(part, voice)][1]}"
                               for voice in VARIANTS.values())
            print(f"| **all {part}** | **{r}/{n} = {r / n:.2%}** | {voices} | wrong "
                  f"{kept_wrong[part]}, asked again {len(missed[part])} |")
        allr = sum(v[0] for k, v in per.items() if k[0] not in APART)
        alln = sum(v[1] for k, v in per.items() if k[0] not in APART)
        first = [v for k, v in per.items() if k[0] in ("tuned", "held_out")]
        r1, n1 = sum(v[0] for v in first), sum(v[1] for v in first)
        fresh = [v for k, v in per.items() if k[0] == "held_out_fresh"]
        r2, n2 = sum(v[0] for v in fresh), sum(v[1] for v in fresh)
        print(f"\nfree replies understood: {allr}/{alln} = {allr / alln:.2%} (the first 147: "
              f"{r1}/{n1} = {r1 / n1:.2%}; held out, fresh (worked on since stop 18): "
              f"{r2}/{n2} = {r2 / max(n2, 1):.2%}); shipped clips: {clip_right}/{len(others)}")
        for part, name in (("held_out_lead", "the lead's held-out set"),
                           ("held_out_lead2", "the lead's second set"),
                           ("held_out_hear", "hear's own (not blind)"),
                           ("held_out_lead3", "the lead's third (semi-blind)"),
                           ("held_out_lead4", "the lead's fourth (blind)"),
                           ("held_out_hear_b", "hear-b's own (not blind)"),
                           ("held_out_hear_a", "hear-a's own (not blind)"),
                           ("held_out_lead5", "the lead's fifth (blind)"),
                           ("held_out_hear_c", "hear-c's own (not blind)"),
                           ("held_out_lead6", "the lead's sixth (blind)")):
            cells = [v for k, v in per.items() if k[0] == part]
            r, n = sum(v[0] for v in cells), sum(v[1] for v in cells)
            n_dis = 3 * sum(m["set"] == part and m["intent"] is None for m in meta.values())
            print(f"{name} (apart, not in the figure above): {r}/{n} = {r / max(n, 1):.2%} "
                  f"understood; its unrelated sentences taken as an answer: "
                  f"{sum(part_of(meta, u[0]) == part for u in unrelated)}/{n_dis}")
            print(f"  wrong: {[w for w in wrong if part_of(meta, w[0]) == part]}")
            print(f"  not understood: {missed[part]}")
        print(f"wrong answers (kept as another answer): {len(wrong)} {wrong}")
        print(f"needs_help/emergency heard as ok/yes/no: {len(trouble_fine)} {trouble_fine}")
        n_unrel = 3 * sum(m["set"] == "distractor" or m["intent"] is None
                          for m in meta.values()) + \
            2 * (len(real) + 2)
        print(f"unrelated speech taken as an answer: {len(unrelated)}/{n_unrel} {unrelated}")
        print(f"replies cut in two by the end silence: {len(cut)} {cut}")
        print(f"classify: {1000 * CLASSIFY[0] / max(CLASSIFY[1], 1):.1f} CPU-ms per reply "
              f"({CLASSIFY[1]} calls)")
        CLASSIFY[:] = [0.0, 0]
    if args.kws:
        kws_compare(engine, meta, audio, others, real)


def kws_compare(engine, meta, audio, others, real) -> None:
    """Keyword spotting alone and as a fallback, with each built-in question's phrase list."""
    from callbot.speech.kws import KwsEngine

    kws = KwsEngine.load()
    rows: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    items = [(stem + v, meta[stem]["text"], meta[stem]["set"]) for stem in meta for v in VARIANTS]
    items += [(n, None, "unrelated") for n in real] + [("clip:wei", None, "unrelated")]
    items += [(n, None, "clip") for n in others]
    pcm_of = {**audio, **others, **real}
    clips = json.loads((REPLIES / "transcripts.json").read_text(encoding="utf-8"))
    for name, text, part in items:
        if part == "clip":
            text = clips[name[5:]]
        part = "unrelated" if part == "distractor" else part
        for q, wanted in QUESTIONS.items():
            want = key(intents.classify(text, wanted)) if text else None
            got = key(answer_of(finals(engine, pcm_of[name], 0.8), wanted))
            kf = finals(kws, pcm_of[name], 0.8, intents.phrases(wanted))
            kgot = key(next((a for f in kf if f.text and (a := intents.classify(f.text, wanted))),
                            None))
            r = rows[(part, q)]
            r[0] += 1
            r[1] += got == want
            r[2] += kgot == want
            r[3] += (got if got is not None else kgot) == want
            r[4] += got is not None and got != want
            r[5] += kgot is not None and kgot != want
    print("\n## keyword spotting beside the transcript (end silence 0.8 s)\n")
    print("| replies | question | n | pinyin right | kws right | pinyin, else kws | pinyin wrong | "
          "kws wrong |")
    print("|---|---|---|---|---|---|---|---|")
    for (part, q), r in sorted(rows.items()):
        print(f"| {part} | {q} | " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
