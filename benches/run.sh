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
for part in chat embed; do
  echo "== llama-cpp-python: $part" >&2
  "$venv/bin/python" benches/reference/llama_cpp_python_bench.py "$part" "$chat_gguf" "$embed_gguf" \
    | tee "$out/llama-cpp-python-$part.jsonl"
done

echo "== splitters: catena vs langchain-text-splitters" >&2
corpora="$(mktemp -d)"
cargo bench --quiet -p catena-splitters --bench recursive -- "$corpora" | tee "$out/splitter-catena.jsonl"
"$venv/bin/python" benches/reference/langchain_splitter_bench.py "$corpora" | tee "$out/splitter-langchain.jsonl"
rm -rf "$corpora"
