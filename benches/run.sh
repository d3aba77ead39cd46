#!/usr/bin/env bash
# Runs every benchmark and the reference implementations side by side, writing JSON lines to
# target-independent results under benches/results/ (docs/benchmarks.md is written from them).
set -euo pipefail
cd "$(dirname "$0")/.."
# The same target folder as the Makefile, so benchmarks reuse its builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}"
out=benches/results
mkdir -p "$out"
venv="$(benches/setup-python.sh)"
bin="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}/debug/catena"
chat_gguf="$("$bin" models pull chat | awk '{print $2}')"
embed_gguf="$("$bin" models pull embed | awk '{print $2}')"
# catena and the bare loop generate in separate processes: llama.cpp's OpenMP thread teams of two
# engines in one process compete for the cores and distort token rates.
for part in chat-catena chat-bare embed reuse concurrency; do
  echo "== catena/bare: $part" >&2
  cargo bench --quiet -p catena-models --bench llama -- "$part" | tee "$out/llama-$part.jsonl"
done
# Speculative decoding: what a batch of n tokens costs, whether logits depend on the batch, and
# greedy generation with and without prompt lookup (each in its own process; the texts are in the
# results to compare byte for byte).
for part in batch-cost invariance speculation-off speculation-on; do
  echo "== speculation: $part" >&2
  cargo bench --quiet -p catena-models --bench llama -- "$part" chat | tee "$out/llama-$part.jsonl"
done
# Draft-model drafting: Qwen2.5-Coder 1.5B (`agent`) drafted by 0.5B (`agent-small`), against the
# 1.5B alone, same sets.
for part in speculation-off speculation-draft; do
  echo "== speculation: $part agent" >&2
  cargo bench --quiet -p catena-models --bench llama -- "$part" agent agent-small | tee "$out/llama-$part-agent.jsonl"
done
# The same conversations through llama-cpp-python, without and with its prompt-lookup decoding.
cargo bench --quiet -p catena-models --bench llama -- speculation-prompts > "$out/speculation-prompts.jsonl"
for part in speculation-off speculation-on; do
  echo "== llama-cpp-python: $part" >&2
  "$venv/bin/python" benches/reference/llama_cpp_python_bench.py "$part" "$chat_gguf" "$out/speculation-prompts.jsonl" \
    | tee "$out/llama-cpp-python-$part.jsonl"
done
for part in chat embed; do
  echo "== llama-cpp-python: $part" >&2
  "$venv/bin/python" benches/reference/llama_cpp_python_bench.py "$part" "$chat_gguf" "$embed_gguf" \
    | tee "$out/llama-cpp-python-$part.jsonl"
done

echo "== splitters: catena vs langchain-text-splitters" >&2
corpora="$(mktemp -d)"
cargo bench --quiet -p catena-splitters --bench recursive -- "$corpora" | tee "$out/splitter-catena.jsonl"
"$venv/bin/python" benches/reference/langchain_splitter_bench.py "$corpora" | tee "$out/splitter-langchain.jsonl"
echo "== splitters: the text-splitter crate" >&2
cargo run --quiet --release --manifest-path benches/compare-text-splitter/Cargo.toml -- "$corpora" \
  | tee "$out/splitter-text-splitter.jsonl"
rm -rf "$corpora"

echo "== loaders: PDF and HTML throughput, peak memory (one process each)" >&2
: > "$out/loading.jsonl"
for part in pdf html; do
  cargo bench --quiet -p catena-loaders --bench loading -- "$part" | tee -a "$out/loading.jsonl"
done

echo "== retrieval: in-memory exact top-10 vs numpy, single and batched, 100k and 1M x 384 (same vectors)" >&2
: > "$out/retrieval-memory.jsonl"
for rows_queries in 100000:1000 1000000:200; do
  vecs="$(mktemp -d)"
  cargo bench --quiet -p catena-retrievers --bench retrieval -- memory "${rows_queries%:*}" 384 "${rows_queries#*:}" "$vecs" \
    | tee -a "$out/retrieval-memory.jsonl"
  "$venv/bin/python" benches/reference/numpy_exact_bench.py "$vecs" "${rows_queries%:*}" 384 | tee -a "$out/retrieval-memory.jsonl"
  rm -rf "$vecs"
done
echo "== retrieval: LanceDB ANN recall and latency, catena vs lancedb direct (100k, 1M x 384)" >&2
: > "$out/retrieval-lancedb.jsonl"
for n in 100000 1000000; do
  cargo bench --quiet -p catena-retrievers --bench retrieval -- lance "$n" 384 500 | tee -a "$out/retrieval-lancedb.jsonl"
done
echo "== retrieval: pgvector HNSW recall and latency, catena vs the same SQL (the lance part's 100k x 384 vectors)" >&2
scripts/fetch-data.sh
CATENA_PG_VECTOR=1 scripts/with-postgres.sh cargo bench --quiet -p catena-retrievers --features pgvector --bench retrieval -- \
  pgvector 100000 384 500 | tee "$out/retrieval-pgvector.jsonl"
echo "== ingest: sharded into pgvector by 1, 2, 4 workers (deterministic embedder, 20k chunks)" >&2
CATENA_PG_VECTOR=1 scripts/with-postgres.sh cargo bench --quiet -p catena-retrievers --features pgvector --bench retrieval -- \
  shards 20000 | tee "$out/ingest-sharded.jsonl"
cranfield="${CATENA_CRANFIELD_DIR:-../shared/data/cranfield}"
if [ -f "$cranfield/corpus.jsonl" ]; then
  echo "== retrieval: BM25 vs rank_bm25 on Cranfield (whitespace tokens, rank_bm25 mode)" >&2
  top="$(mktemp)"
  cargo bench --quiet -p catena-retrievers --bench retrieval -- bm25 "$cranfield/corpus.jsonl" "$cranfield/queries.jsonl" "$top" \
    | tee "$out/retrieval-bm25.jsonl"
  "$venv/bin/python" benches/reference/rank_bm25_bench.py "$cranfield/corpus.jsonl" "$cranfield/queries.jsonl" "$top" \
    | tee -a "$out/retrieval-bm25.jsonl"
  rm -f "$top"
  echo "== retrieval: quality on Cranfield (nDCG@10, recall@100, MAP; trec_eval semantics)" >&2
  CATENA_CRANFIELD_DIR="$cranfield" cargo test --quiet --release -p catena --test retrieval_quality -- --nocapture 2>/dev/null \
    | grep '^cranfield' | tee "$out/retrieval-quality.txt"
fi

echo "== ingest: a ~50 MB mixed corpus (md, html, txt, pdf, csv, jsonl), release build" >&2
cargo build --quiet --release -p catena --bin catena
release="${CARGO_TARGET_DIR}/release/catena"
corpus="$(mktemp -d)"
cargo bench --quiet -p catena-loaders --bench loading -- corpus "$corpus/all" 50
# Load + split of the whole corpus (the embedding model on 2 CPU cores would take an hour for it).
start=$(date +%s.%N)
"$release" split "$corpus/all" --chunk-size 1000 --chunk-overlap 100 > "$corpus/chunks.jsonl"
end=$(date +%s.%N)
python3 - "$corpus" "$start" "$end" <<'PY' | tee "$out/ingest-split.jsonl"
import json, os, sys
d, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
size = sum(os.path.getsize(os.path.join(d, "all", f)) for f in os.listdir(os.path.join(d, "all")))
chunks = sum(1 for _ in open(os.path.join(d, "chunks.jsonl")))
print(json.dumps({"impl": "catena", "stage": "load+split", "mb": size / 1e6, "files": len(os.listdir(os.path.join(d, "all"))),
                  "chunks": chunks, "seconds": end - start, "chunks_s": chunks / (end - start), "mb_s": size / 1e6 / (end - start)}))
PY
# The full pipeline (load, split, embed with the default MiniLM, write) on a slice of every file
# type, catena against LangChain, alternated twice.
echo "== ingest: catena vs LangChain (loaders, splitter, LlamaCppEmbeddings, LanceDB)" >&2
benches/ingest_race.sh "$release" "$corpus/all" "$venv" "$out/ingest-race.jsonl"
rm -rf "$corpus"

if [ -f "$cranfield/corpus.jsonl" ]; then
  echo "== catena query --queries: 225 Cranfield questions in one process vs one process each" >&2
  benches/query_batch.sh "$release" "$cranfield" "$out/query-batch.jsonl"
fi

echo "== catena serve: HTTP streaming overhead and 32-client load" >&2
# Release build without LanceDB/SQL (not needed here; keeps this build to minutes).
cargo build --quiet --release --no-default-features --features llama,serve,openai --example serve_bench
"${CARGO_TARGET_DIR}/release/examples/serve_bench" "$out/serve.json"
echo "== serving: what the gateway (catena serve --upstream) adds per request" >&2
cargo build --quiet --release --no-default-features --features llama,serve,openai --example gateway_bench
"${CARGO_TARGET_DIR}/release/examples/gateway_bench" "$out/gateway.json"

echo "== MCP: a call's round trip, catena's client vs the Python SDK's on the same servers; HTTP under 32 clients" >&2
scripts/fetch-data.sh
data="${CATENA_DATA_DIR:-$HOME/.cache/catena/data}"
everything="$data/mcp/node_modules/.bin/mcp-server-everything"
mcp_bench="$(cargo bench --quiet -p catena-tools --features mcp --bench mcp -- exe)"
# Three servers: the Node reference server, catena's own (debug `catena mcp serve`), and catena's
# server built with optimizations (the cheapest at hand, so the round trip is mostly the client's).
{ for client in catena python; do
    for server in everything catena release; do
      case "$server" in
        everything) label=mcp-server-everything; set -- echo '{"message": "hi"}' "$everything" stdio ;;
        catena) label=catena; set -- calculator '{"expression": "17 * 23"}' "$bin" mcp serve ;;
        release) label=catena-release; set -- calculator '{"expression": "17 * 23"}' "$mcp_bench" serve ;;
      esac
      if [ "$client" = catena ] && [ "$server" = release ]; then
        cargo bench --quiet -p catena-tools --features mcp --bench mcp -- roundtrip 5000 "$1" "$2" self
        MCP_BENCH_CURRENT_THREAD=1 cargo bench --quiet -p catena-tools --features mcp --bench mcp -- \
          roundtrip 5000 "$1" "$2" self
      elif [ "$client" = catena ]; then
        cargo bench --quiet -p catena-tools --features mcp --bench mcp -- roundtrip 5000 "$@"
      else
        "$data/pymcp/bin/python" scripts/mcp/py_client.py bench 5000 "$@" \
          | sed "s|^{|{\"impl\": \"python-sdk\", \"server\": \"$label\", \"tool\": \"$1\", |"
      fi
    done
  done
  cargo bench --quiet -p catena-tools --features mcp --bench mcp -- http 32 200; } | tee "$out/mcp.jsonl"

echo "== tracing: the agent loop with no subscriber vs every GenAI span exported to a local Phoenix" >&2
cargo build --quiet --release --no-default-features --features otel,sqlite --example trace_overhead
phoenix_dir="$(mktemp -d)"
PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=6199 PHOENIX_GRPC_PORT=4399 PHOENIX_WORKING_DIR="$phoenix_dir" \
  PHOENIX_TELEMETRY_ENABLED=false "$data/phoenix/bin/phoenix" serve >/dev/null 2>&1 &
phoenix_pid=$!
until curl -sf http://127.0.0.1:6199/healthz >/dev/null; do sleep 1; done
{ for round in 1 2 3; do
    "${CARGO_TARGET_DIR}/release/examples/trace_overhead" off 300
    "${CARGO_TARGET_DIR}/release/examples/trace_overhead" on 300 http://127.0.0.1:6199/v1/traces
    "${CARGO_TARGET_DIR}/release/examples/trace_overhead" store 300
  done; } | tee "$out/trace-overhead.jsonl"
kill "$phoenix_pid"; rm -rf "$phoenix_dir"

echo "== console: opening a 10,000-span run in the trace explorer, headless Chromium" >&2
cargo build --quiet --release --no-default-features --features serve,sqlite --example console_load
"${CARGO_TARGET_DIR}/release/examples/console_load" | tee "$out/console-load.txt"

echo "== security: catena redteam (defences off vs on) and garak against catena serve" >&2
benches/redteam.sh "$out/redteam"

echo "== text-to-SQL on Chinook (local model)" >&2
scripts/fetch-data.sh
cargo run --quiet --example text_to_sql_eval -- "$out/text-to-sql.json"

echo "== agents: per-step executor overhead, catena vs LangChain's AgentExecutor (scripted models)" >&2
{ cargo bench --quiet -p catena-agents --bench executor -- 300
  "$venv/bin/python" benches/reference/langchain_agent_bench.py 100; } | tee "$out/agent-executor.jsonl"
echo "== graphs: per-step overhead and checkpoint bytes, catena vs LangGraph (trivial nodes)" >&2
{ cargo bench --quiet -p catena-agents --features sqlite --bench graph -- 200
  "$venv/bin/python" benches/reference/langgraph_bench.py 200; } | tee "$out/graph.jsonl"
echo "== graphs: SIGKILL at every point of a five-node run, resumed, 50 runs" >&2
CATENA_GRAPH_CRASH_RUNS=50 cargo test --quiet -p catena-agents --features sqlite --test graph_crash
echo "== crash safety: catena ingest, the cache file and the sessions file killed with SIGKILL (50 runs each); full disks" >&2
CATENA_CRASH_RUNS=50 cargo test --quiet --workspace --test crash -- --nocapture --test-threads 1 2>&1 \
  | grep -E '^(CATENA_CRASH_SEED|uninterrupted|run [0-9]|disk of|64 KiB|skipped)' | tee "$out/crash.txt"
echo "== catena serve soak: 64 streaming clients for 10 min with slowloris, oversized and 10,000 malformed requests" >&2
CATENA_SOAK_SECONDS=600 CATENA_SOAK_CLIENTS=64 CATENA_SOAK_MALFORMED=10000 \
  cargo test --quiet --workspace --test serve_soak -- --nocapture 2>&1 | grep '^soak' | tee "$out/serve-soak.txt"
echo "== agents: local-model step latency with and without prefix reuse" >&2
cargo run --quiet --example agent_step_bench -- "$out/agent-steps.json"

echo "== agents: the agent example's task suite (24 questions) per local model and protocol" >&2
cargo build --quiet --example agent
benches/agent_tasks.sh "$out/agent-tasks.jsonl"
echo "== agents: BFCL single-turn function calling, catena serve native/generic vs llama-cpp-python" >&2
benches/bfcl.sh "$out/bfcl.jsonl" 10 agent

echo "== models: what the rig adapter adds to a call, catena RigChatModel vs rig alone (same run)" >&2
cargo bench --quiet -p catena-models --no-default-features --features rig --bench rig | tee "$out/rig-overhead.jsonl"

echo "== eval: trec_eval measures on a 10k-query run, catena vs pytrec_eval (same files)" >&2
trec="$(mktemp -d)"
{ "$venv/bin/python" benches/reference/trec_reference.py bench 10000 "$trec"
  cargo bench --quiet -p catena-eval --bench trec -- "$trec"; } | tee "$out/trec-eval.jsonl"
rm -rf "$trec"

echo "== eval: stemmed ROUGE-1/2/L/Lsum on the Cranfield title/abstract pairs, catena vs rouge-score" >&2
{ "$venv/bin/python" benches/reference/rouge_bench.py "$cranfield/corpus.jsonl"
  # cargo runs benches in their crate's folder: the corpus path must be absolute.
  cargo bench --quiet -p catena-eval --bench rouge -- "$(cd "$cranfield" && pwd)/corpus.jsonl"; } | tee "$out/rouge.jsonl"
