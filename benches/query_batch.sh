#!/usr/bin/env bash
# `catena query --queries` (one process for a whole question set) against the per-process loop it
# replaces (one `catena query` per question, each loading the embedding model and opening the
# store), on Cranfield: its 1,400 abstracts ingested into LanceDB, its 225 queries, top 100 by
# similarity. Prints one JSON line per way with questions/s, then the batch run's trec_eval
# figures, so the run is shown to be usable as well as fast.
#
# Usage: benches/query_batch.sh CATENA_BINARY CRANFIELD_DIR OUT_JSONL
set -euo pipefail
catena="$1" cranfield="$2" out="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$catena" ingest "$cranfield/corpus.jsonl" --store "$work/store" --json > "$work/ingest.json"
questions="$cranfield/queries.jsonl"
count="$(grep -c . "$questions")"

start=$(date +%s.%N)
"$catena" query --store "$work/store" --queries "$questions" --run "$work/run.txt" \
  -r similarity -k 100 --run-doc seq_num 2> "$work/batch.log"
end=$(date +%s.%N)
python3 -c "import json,sys; print(json.dumps({'bench': 'query-batch', 'way': 'one process (--queries)', 'questions': $count, 'seconds': $end - $start, 'questions_s': $count / ($end - $start)}))" | tee "$out"

# The loop a user wrote before --queries existed (the same questions, one process each).
start=$(date +%s.%N)
python3 -c "import json,sys; [print(json.loads(l)['text']) for l in open(sys.argv[1]) if l.strip()]" "$questions" \
  | while IFS= read -r q; do
      "$catena" query --store "$work/store" -r similarity -k 100 --json -- "$q" > /dev/null
    done
end=$(date +%s.%N)
python3 -c "import json; print(json.dumps({'bench': 'query-batch', 'way': 'one process per question', 'questions': $count, 'seconds': $end - $start, 'questions_s': $count / ($end - $start)}))" | tee -a "$out"

"$catena" eval retrieval --qrels "$cranfield/qrels.tsv" --run "$work/run.txt" -m ndcg_cut_10 recall_100 map --json \
  | tee -a "$out"
