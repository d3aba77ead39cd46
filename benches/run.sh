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
echo "== splitters: the text-splitter crate" >&2
cargo run --quiet --release --manifest-path benches/compare-text-splitter/Cargo.toml -- "$corpora" \
  | tee "$out/splitter-text-splitter.jsonl"
rm -rf "$corpora"

echo "== loaders: PDF and HTML throughput, peak memory (one process each)" >&2
: > "$out/loading.jsonl"
for part in pdf html; do
  cargo bench --quiet -p catena-loaders --bench loading -- "$part" | tee -a "$out/loading.jsonl"
done

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
# The full pipeline (load, split, embed with the default MiniLM, write) on a 1 MB slice of it (20 files).
mkdir -p "$corpus/slice"
ls "$corpus/all" | head -20 | while read -r f; do cp "$corpus/all/$f" "$corpus/slice/"; done
"$release" ingest "$corpus/slice" --store "$corpus/store" --json | tee "$out/ingest-full.jsonl"
rm -rf "$corpus"
