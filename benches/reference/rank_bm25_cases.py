"""Reference scores of rank_bm25.BM25Okapi (0.2.2, default k1 1.5, b 0.75, epsilon 0.25) on
whitespace-tokenised generated corpora, for catena's BM25 parity test.

Corpora mix Zipf-distributed words (so some terms are in more than half of the documents and get
rank_bm25's epsilon-floored idf), mixed case, punctuation glued to words, unicode, empty documents,
and queries with repeated and unknown terms. Scores are stored as the bits of the float64, so the
test compares them exactly.

Usage: python rank_bm25_cases.py OUT.json (fixed seed: reproducible).
"""
import json
import random
import struct
import sys

from rank_bm25 import BM25Okapi

WORDS = ["the", "of", "flow", "wing", "Flow", "pressure,", "boundary", "layer", "shock", "mach",
         "heat", "transfer", "über", "東京", "x", "naïve", "supersonic", "vortex", "drag", "lift",
         "plate", "jet", "turbulent", "laminar", "the.", "a", "an", "cone", "body", "slender"]


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def word(rng):
    # Zipf-like: low indices are much more frequent.
    i = min(int(rng.paretovariate(1.1)) - 1, len(WORDS) - 1)
    return WORDS[i] if rng.random() < 0.9 else "w%d" % rng.randint(0, 400)


def main():
    rng = random.Random(11)
    corpora = []
    for size in [1, 2, 3, 10, 50, 200]:
        docs = []
        for _ in range(size):
            n = rng.choice([0, 1, 3, 8, 20, 60]) if size > 3 else rng.randint(1, 8)
            sep = [" ", "  ", "\t", "\n", " \u3000 "]
            docs.append("".join(word(rng) + rng.choice(sep) for _ in range(n)).rstrip())
        bm25 = BM25Okapi([d.split() for d in docs])
        queries = []
        for _ in range(12):
            q = " ".join(word(rng) for _ in range(rng.randint(1, 6)))
            if rng.random() < 0.2:
                q += " unknownterm"
            scores = bm25.get_scores(q.split())
            top = bm25.get_top_n(q.split(), list(range(size)), n=10)
            queries.append({
                "query": q,
                "scores": [bits(s) for s in scores],
                "top10_scores": [bits(scores[i]) for i in top],
            })
        corpora.append({"documents": docs, "queries": queries})
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump({"generator": "rank_bm25 0.2.2 BM25Okapi", "corpora": corpora}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
