#!/usr/bin/env bash
# The end-to-end ingest race: `catena ingest` against LangChain's loaders, splitter,
# LlamaCppEmbeddings (same MiniLM GGUF) and LanceDB store, over the same slice of the generated
# mixed corpus (every file type), each in its own process, alternated ROUNDS times.
#
# usage: benches/ingest_race.sh RELEASE_CATENA CORPUS_DIR VENV OUT.jsonl [FILES] [ROUNDS]
# CORPUS_DIR is what `cargo bench -p catena-loaders --bench loading -- corpus DIR MB` wrote; the
# slice is its first FILES generated files (default 20: markdown, HTML, text, PDF, CSV, JSONL in
# the generator's proportions), not the first names in alphabetical order (all markdown).
set -euo pipefail
cd "$(dirname "$0")/.."
catena="$1" corpus="$2" venv="$3" out="$4" files="${5:-20}" rounds="${6:-2}"
embed_gguf="$("$catena" models pull embed | awk '{print $2}')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/slice"
for f in "$corpus"/*; do
  n="$(basename "$f" | tr -dc 0-9)"
  if [ -n "$n" ] && [ "$n" -lt "$files" ]; then cp "$f" "$work/slice/"; fi
done
echo "slice: $(ls "$work/slice" | wc -l) files, $(du -sh "$work/slice" | cut -f1)" >&2
# A summary line (stdin) marked with its side and round, appended to OUT.
tag() {
  python3 -c 'import json,sys; r=json.load(sys.stdin); r["impl"]=sys.argv[1]; r["round"]=int(sys.argv[2]); print(json.dumps(r))' "$1" "$2" \
    | tee -a "$out"
}
: > "$out"
for round in $(seq "$rounds"); do
  rm -rf "$work/catena-store" "$work/langchain-store"
  "$catena" ingest "$work/slice" --store "$work/catena-store" --json | tag catena "$round"
  "$venv/bin/python" benches/reference/langchain_ingest_bench.py "$work/slice" "$embed_gguf" "$work/langchain-store" "$(nproc)" \
    | tag langchain "$round"
done
