"""Same answers: intents.classify (and analyse, and the staff rendering) of this tree against a
git revision's, over every transcript the tests and benches use and perturbed variants of them.

    python bench/classify_same.py [--base main] [--audio] [--variants 4] [--lexicon-every 8]

A one-off proof for a change to the matching machinery (callbot/intents.py's Lexicon, _align,
callbot/pinyin.py's distance) that must not change any result. The transcripts: every Chinese
and every toned-pinyin string literal of tests/ and bench/, the free replies
(tests/fixtures/audio/free/transcripts.json, written by scripts/make_free_replies.py), the
shipped reply clips (callbot/data/replies), every --lexicon-every-th lexicon phrase, and with
--audio the recogniser's pinyin of every free reply and clip at the end silences bench/hear.py
uses (0.3 and 0.8 s: what its classify figure is measured on; ~4 min). Each (as pypinyin
reads it, or as the recogniser's pinyin) gets --variants perturbed copies: a syllable dropped,
one substituted by another of the lexicon's, one heard in another tone, one inserted, one marked
unsure. Each is classified over every intent and over the two built-in questions' intents, and
analysed (matches with their costs, repr: exact), plain and with read_urgent; a reply as pinyin
is also rendered (callbot.speech.hanzi.render). The base revision runs from `git archive` in its
own process. Prints how many results differ (must be 0) and each side's CPU-ms per reply.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HAN = re.compile(r"[\u3400-\u9fff]")
PINYIN_WORD = re.compile(r"^[a-zü\u00c0-\u024f\u0300-\u036f]+\??$")
TONED = re.compile(r"[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ]")
QUESTIONS = {"mask": ["yes", "no", "quantity", "later", "emergency", "human", "stop", "repeat",
                      "wrong_person"],
             "welfare": ["ok", "needs_help", "later", "emergency", "human", "stop", "repeat",
                         "wrong_person"]}


def literals() -> tuple[set[str], set[str]]:
    """(Chinese texts, toned pinyin strings) among the string literals of tests/ and bench/."""
    texts: set[str] = set()
    pinyins: set[str] = set()
    files = [*(REPO / "tests").rglob("*.py"), *(REPO / "bench").glob("*.py"),
             REPO / "scripts" / "make_free_replies.py"]
    for path in files:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                s = node.value.strip()
                if not s or len(s) > 200:
                    continue
                words = s.split()
                if TONED.search(s) and all(PINYIN_WORD.match(w) for w in words):
                    pinyins.add(s)
                elif HAN.search(s):
                    texts.add(s)
    return texts, pinyins


def decoded() -> set[str]:
    """The recogniser's pinyin of every free reply and shipped clip, as bench/hear.py hears them."""
    from callbot.speech.audio import read_8k
    from callbot.speech.pinyin_asr import PinyinEngine

    sys.path.insert(0, str(REPO / "bench"))
    import hear  # type: ignore[import-not-found]

    engine = PinyinEngine.load()
    meta = json.loads((hear.FREE / "transcripts.json").read_text(encoding="utf-8"))
    wavs = [hear.FREE / f"{stem}{v}.wav" for stem in meta for v in hear.VARIANTS]
    wavs += sorted(hear.REPLIES.glob("*.wav"))
    if hear.REAL.is_dir():
        wavs += sorted(hear.REAL.glob("*.wav"))
    out = set()
    for wav in wavs:
        pcm = read_8k(wav)
        for silence in (0.3, 0.8):
            out |= {f.pinyin for f in hear.finals(engine, pcm, silence) if f.pinyin}
    return out


def variants(pinyin: str, n: int, rnd: random.Random, pool: list[str]) -> list[str]:
    """*n* perturbed copies of the toned pinyin *pinyin* (see the module's docstring)."""
    from callbot import pinyin as py

    words = pinyin.split()
    out = []
    tones = {"a": "āáǎàa", "e": "ēéěèe", "i": "īíǐìi", "o": "ōóǒòo", "u": "ūúǔùu", "ü": "ǖǘǚǜü"}
    for _ in range(n):
        w = list(words)
        op = rnd.randrange(5)
        k = rnd.randrange(len(w)) if w else 0
        if op == 0 and len(w) > 1:
            del w[k]
        elif op == 1 and w:
            w[k] = rnd.choice(pool) + ("?" if w[k].endswith("?") else "")
        elif op == 2 and w:
            ini, fin = py.from_string(w[k])[0] if py.from_string(w[k]) else ("", "")
            base, _tone = py.split_tone(fin)
            vowel = next((c for c in "aeiouü" if c in base.replace("v", "ü")), None)
            if vowel is not None:
                plain = base.replace("v", "ü")
                w[k] = ini + plain.replace(vowel, rnd.choice(tones[vowel]), 1)
        elif op == 3:
            w.insert(rnd.randrange(len(w) + 1), rnd.choice(pool))
        elif w:
            w[k] = w[k].rstrip("?") + "?"
        out.append(" ".join(w))
    return out


def items(args: argparse.Namespace) -> list[list[str]]:
    """[text, pinyin] pairs (pinyin "" for typed text read by pypinyin)."""
    from callbot import intents
    from callbot import pinyin as py

    texts, pinyins = literals()
    free = json.loads((REPO / "tests/fixtures/audio/free/transcripts.json").read_text("utf-8"))
    texts |= {m["text"] for m in free.values()}
    clips = json.loads((REPO / "callbot/data/replies/transcripts.json").read_text("utf-8"))
    texts |= set(clips.values())
    lex = intents.lexicon()
    texts |= {e.chars for e in lex.entries[::args.lexicon_every]}
    if args.audio:
        pinyins |= decoded()
    pool = sorted({py.to_string([s]) for e in lex.entries for s in e.syllables})
    rnd = random.Random(12)
    out = [[t, ""] for t in sorted(texts)] + [["", p] for p in sorted(pinyins)]
    extra = []
    for text, pin in out:
        base = pin or py.to_string(py.from_text(intents.normalize(text)))
        if base:
            extra += [["", v] for v in variants(base, args.variants, rnd, pool) if v]
    return [list(x) for x in dict.fromkeys(tuple(x) for x in out + extra)]


def worker(src: str, dst: str) -> None:
    """Classify, analyse and render every item of *src* with the callbot on sys.path."""
    from callbot import intents
    from callbot import pinyin as py

    intents.warm()
    results = []
    spent = 0.0
    todo = json.loads(Path(src).read_text(encoding="utf-8"))
    for text, pin in todo:
        row = []
        t0 = time.process_time()
        for expect in (None, *QUESTIONS.values()):
            row.append(repr(intents.classify(text, expect, pinyin=pin or None)))
        spent += time.process_time() - t0
        syls = intents._syllables(text, pin or None)
        marks = py.unsure_of(pin) if pin else frozenset()
        for urgent in (False, True):
            got = intents.analyse(syls, marks=marks, read_urgent=urgent)
            row.append(repr([(m.start, m.end, m.entry.chars, m.entry.intents, m.cost, m.value,
                              m.doubtful) for m in got.matches]))
        if pin:
            from callbot.speech import hanzi

            row.append(hanzi.render(syls, unsure=marks))
        results.append(row)
    Path(dst).write_text(json.dumps({"results": results, "cpu_s": spent}, ensure_ascii=False),
                         encoding="utf-8")


def run(tree: Path, src: Path, dst: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(src), str(dst)],
                   cwd=tree, env=env, check=True)
    return json.loads(dst.read_text(encoding="utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--base", default="main", help="the revision to compare with (default main)")
    ap.add_argument("--audio", action="store_true", help="also the recogniser's pinyin of the "
                    "free replies and clips (bench/hear.py's replies; ~4 min)")
    ap.add_argument("--variants", type=int, default=4, help="perturbed copies per transcript")
    ap.add_argument("--lexicon-every", type=int, default=8, help="every n-th lexicon phrase")
    ap.add_argument("--worker", nargs=2, metavar=("ITEMS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    sys.path.insert(0, str(REPO))
    todo = items(args)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.base, "callbot"], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        src = Path(tmp) / "items.json"
        src.write_text(json.dumps(todo, ensure_ascii=False), encoding="utf-8")
        old = run(base, src, Path(tmp) / "old.json")
        new = run(REPO, src, Path(tmp) / "new.json")
    diffs = [(item, a, b) for item, a, b in zip(todo, old["results"], new["results"], strict=True)
             if a != b]
    n = len(todo)
    print(f"{n} transcripts ({sum(1 for t in todo if t[1])} as pinyin), each classified 3 ways, "
          f"analysed 2 ways (rendered when pinyin)")
    print(f"classify CPU-ms per call: base {args.base} {1000 * old['cpu_s'] / (3 * n):.2f}, "
          f"this tree {1000 * new['cpu_s'] / (3 * n):.2f}")
    print(f"differences: {len(diffs)}")
    for item, a, b in diffs[:20]:
        print(f"  {item}\n    base: {a}\n    this: {b}")


if __name__ == "__main__":
    main()
