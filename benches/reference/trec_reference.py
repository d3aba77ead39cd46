"""Reference values for catena's trec_eval measures, from pytrec_eval (trec_eval's C code).

  trec_reference.py fixture DIR   writes DIR/trec_qrels.txt, DIR/trec_run.txt and
                                   DIR/trec_reference.json (per-query values of every measure)
  trec_reference.py bench N DIR   writes a run of N queries to DIR and times pytrec_eval on it

The generated data has graded relevance (0-3), tied scores, queries judged but not retrieved,
queries retrieved but not judged, and queries with no relevant document. Exponential-gain nDCG
(ndcg_exp, not a trec_eval measure) is pytrec_eval's ndcg on the judgements mapped to 2^grade - 1.
"""
import json
import os
import random
import sys
import time

import pytrec_eval

MEASURES = ["P_5", "P_10", "recall_10", "recall_100", "map", "map_cut_10", "ndcg", "ndcg_cut_10",
            "recip_rank", "success_1", "success_5", "num_rel", "num_rel_ret"]


def generate(n_queries, docs_per_query, seed):
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        pool = [f"d{rng.randrange(10 * docs_per_query)}" for _ in range(docs_per_query * 2)]
        if q % 17 != 3:  # some queries are not judged
            judged = rng.sample(sorted(set(pool)), min(len(set(pool)), docs_per_query // 2))
            qrels[qid] = {d: (rng.choice([0, 0, 1, 1, 2, 3]) if q % 23 != 5 else 0) for d in judged}
        if q % 19 != 7:  # some are not retrieved
            docs = sorted(set(pool))[:docs_per_query]
            # Scores on a coarse grid, so ties are common.
            run[qid] = {d: round(rng.random(), 1) for d in docs}
    return qrels, run


def write(directory, qrels, run):
    with open(os.path.join(directory, "trec_qrels.txt"), "w") as f:
        for q, docs in qrels.items():
            for d, g in docs.items():
                f.write(f"{q} 0 {d} {g}\n")
    with open(os.path.join(directory, "trec_run.txt"), "w") as f:
        for q, docs in run.items():
            for rank, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1])):
                f.write(f"{q} Q0 {d} {rank + 1} {s} ref\n")


def main():
    mode = sys.argv[1]
    if mode == "fixture":
        directory = sys.argv[2]
        qrels, run = generate(60, 40, seed=7)
        write(directory, qrels, run)
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES))
        per_query = evaluator.evaluate(run)
        # Exponential-gain nDCG is trec_eval's nDCG on judgements whose grades became 2^g - 1.
        exp_qrels = {q: {d: 2 ** g - 1 for d, g in docs.items()} for q, docs in qrels.items()}
        exp = pytrec_eval.RelevanceEvaluator(exp_qrels, {"ndcg", "ndcg_cut_10"}).evaluate(run)
        for q, values in exp.items():
            per_query[q]["ndcg_exp"] = values["ndcg"]
            per_query[q]["ndcg_exp_cut_10"] = values["ndcg_cut_10"]
        with open(os.path.join(directory, "trec_reference.json"), "w") as f:
            json.dump({"measures": MEASURES + ["ndcg_exp", "ndcg_exp_cut_10"], "per_query": per_query}, f,
                      indent=0, sort_keys=True)
    elif mode == "bench":
        n, directory = int(sys.argv[2]), sys.argv[3]
        qrels, run = generate(n, 100, seed=11)
        write(directory, qrels, run)
        elapsed = float("inf")
        for _ in range(5):  # best of 5, as the Rust side
            start = time.perf_counter()
            evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES))
            per_query = evaluator.evaluate(run)
            means = {m: pytrec_eval.compute_aggregated_measure(m, [v[m] for v in per_query.values()]) for m in MEASURES}
            elapsed = min(elapsed, time.perf_counter() - start)
        print(json.dumps({"impl": "pytrec_eval", "queries": len(per_query), "seconds": elapsed, "queries_s": len(per_query) / elapsed,
                          "map": means["map"]}))


if __name__ == "__main__":
    main()
