"""rouge-score's throughput on the Cranfield pairs (each abstract's title as the prediction, the
abstract after its title as the target): ROUGE-1/2/L/Lsum with Porter stemming, best of 5. Prints one JSON line
with the time and the mean F-measure of each type, which eval/benches/rouge.rs must reproduce.

Run: <bench venv>/bin/python benches/reference/rouge_bench.py ../shared/data/cranfield/corpus.jsonl
"""
import json
import sys
import time

import rouge_score
from rouge_score import rouge_scorer

TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def main():
    pairs = []
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            # Cranfield's text repeats the title first; the target is the abstract after it.
            text, title = doc["text"], doc["title"]
            pairs.append((text[len(title):] if text.startswith(title) else text, title))
    best = float("inf")
    for _ in range(5):
        scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
        start = time.perf_counter()
        scores = [scorer.score(target, prediction) for target, prediction in pairs]
        best = min(best, time.perf_counter() - start)
    means = {t: sum(s[t].fmeasure for s in scores) / len(scores) for t in TYPES}
    print(json.dumps({"impl": "rouge-score", "version": getattr(rouge_score, "__version__", "0.1.2"),
                      "pairs": len(pairs), "seconds": best, "pairs_s": len(pairs) / best, "mean_f": means}))


if __name__ == "__main__":
    main()
