"""rank_bm25.BM25Okapi on a BEIR corpus (title + text, whitespace tokens, as catena's rank_bm25
mode): index build time, per-query latency (get_scores + top 10), and agreement of each query's
top 10 with catena's (same ids in the same order, or the same score sequence where ties let the
order differ).

Usage: python rank_bm25_bench.py CORPUS.jsonl QUERIES.jsonl CATENA_TOP10.json
"""
import json
import sys
import time

import numpy as np
from rank_bm25 import BM25Okapi

docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
queries = [json.loads(l)["text"] for l in open(sys.argv[2]) if l.strip()]
catena = json.load(open(sys.argv[3]))
ids = [d["_id"] for d in docs]
start = time.perf_counter()
bm25 = BM25Okapi([f'{d.get("title", "")} {d.get("text", "")}'.split() for d in docs])
build = time.perf_counter() - start
start = time.perf_counter()
tops = []
for q in queries:
    scores = bm25.get_scores(q.split())
    top = np.argsort(scores)[::-1][:10]
    tops.append([(ids[i], float(scores[i])) for i in top if scores[i] != 0.0])
per_query = (time.perf_counter() - start) / len(queries)
same_ids = sum(1 for a, b in zip(tops, catena) if [i for i, _ in a] == [i for i, _ in b])
same_scores = sum(1 for a, b in zip(tops, catena) if [s for _, s in a] == [s for _, s in b])
print(json.dumps({"bench": "bm25", "impl": "rank_bm25", "docs": len(docs), "queries": len(queries),
                  "build_ms": build * 1e3, "query_ms": per_query * 1e3,
                  "same_top10_ids": same_ids, "same_top10_scores": same_scores}))
