"""Exact top-10 search with numpy on the vectors the catena bench wrote: one query at a time (as a
store answers them: `vectors @ q` + argpartition) and in batches (`queries @ vectors.T` + a
row-wise argpartition, numpy's matrix-matrix path): queries/s, and how many top-10 lists match
catena's single-query answers.

Usage: python numpy_exact_bench.py DIR N D
"""
import json
import sys
import time

import numpy as np

d, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
vectors = np.fromfile(f"{d}/vectors.f32", dtype="<f4").reshape(n, dim)
queries = np.fromfile(f"{d}/queries.f32", dtype="<f4").reshape(-1, dim)
# Cosine: normalise once, as catena's store does on insert.
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
catena = json.load(open(f"{d}/catena-top10.json"))


def same_as_catena(tops):
    return sum(1 for a, b in zip(tops, catena) if [str(i) for i in a] == b)


tops = []
start = time.perf_counter()
for q in queries:
    q = q / np.linalg.norm(q)
    scores = vectors @ q
    part = np.argpartition(-scores, 10)[:10]
    tops.append(part[np.argsort(-scores[part], kind="stable")].tolist())
secs = time.perf_counter() - start
print(json.dumps({"bench": "memory-exact", "impl": "numpy", "mode": "single", "n": n, "d": dim,
                  "queries": len(queries), "qps": len(queries) / secs, "same_top10_as_catena": same_as_catena(tops)}))

for batch in (64, 1000):
    tops = []
    start = time.perf_counter()
    for i in range(0, len(queries), batch):
        qs = queries[i:i + batch]
        qs = qs / np.linalg.norm(qs, axis=1, keepdims=True)
        scores = qs @ vectors.T
        part = np.argpartition(-scores, 10, axis=1)[:, :10]
        best = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-best, axis=1, kind="stable")
        tops.extend(np.take_along_axis(part, order, axis=1).tolist())
    secs = time.perf_counter() - start
    print(json.dumps({"bench": "memory-exact", "impl": "numpy", "mode": "batch", "batch": batch, "n": n,
                      "d": dim, "queries": len(queries), "qps": len(queries) / secs,
                      "same_top10_as_catena": same_as_catena(tops)}))
