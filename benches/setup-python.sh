#!/usr/bin/env bash
# Creates the Python environment the comparison benchmarks and reference scripts run in:
# llama-cpp-python (what LangChain's LlamaCpp wraps; built from source, several minutes),
# langchain-text-splitters, langchain-classic (AgentExecutor, the agent-loop reference), langgraph with
# its SQLite checkpointer (the state-graph reference), langchain-community with lancedb, pypdf and
# beautifulsoup4, jq (the ingest race: LangChain's loaders, LlamaCppEmbeddings, LanceDB store), rank_bm25 (the BM25 reference),
# sacrebleu, rouge-score and pytrec-eval-terrier (metric reference values), and NumPy/tokenizers/safetensors for the embedding reference.
# Idempotent: a marker records the pinned set that was installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${CATENA_BENCH_VENV:-$HOME/.cache/catena/bench-venv}"
pins=(llama-cpp-python==0.3.36 langchain-community==0.4.2 lancedb==0.40.0 pypdf==7.1.1 beautifulsoup4==4.15.0 jq==1.13.0 langchain-text-splitters==1.1.3 langchain-classic==1.0.8 langgraph==1.2.24 langgraph-checkpoint-sqlite==3.1.2 rank_bm25==0.2.2 sacrebleu==2.5.1 rouge-score==0.1.2 nltk==3.10.4 pytrec-eval-terrier==0.5.11 numpy tokenizers safetensors psutil)
marker="$venv/.catena-pins"
if [ -f "$marker" ] && [ "$(cat "$marker")" = "${pins[*]}" ]; then
  echo "$venv"
  exit 0
fi
python3 -m venv "$venv" 2>/dev/null || { python3 -m pip install -q virtualenv && python3 -m virtualenv -q "$venv"; }
"$venv/bin/python" -m pip install -q --upgrade pip >&2
# Build llama.cpp inside llama-cpp-python for this CPU, as a user installing it would.
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/python" -m pip install -q "${pins[@]}" >&2
echo "${pins[*]}" > "$marker"
echo "$venv"
