#!/usr/bin/env bash
# What catena's prompt-injection defences cost in answer quality (docs/security.md): the cited-
# answer chain over the repository's docs answers benches/data/docs_qa.jsonl (20 questions) twice,
# with the default defences (spotlighting, canary, link cleaning) and with `--no-defences`, the
# local agent model answering and judging, greedy; prints the two summaries side by side. Replies
# are cached under OUT/<mode>/cache, so an interrupted run resumes where it stopped.
#
#   benches/defences_quality.sh [OUT]      (default benches/results/defences-quality)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}"
out="${1:-benches/results/defences-quality}"
model="${MODEL:-agent}"
# context_recall is left out: it scores retrieval, which the defences do not touch.
metrics="${METRICS:-faithfulness,answer_correctness}"
mkdir -p "$out"
bin="${CATENA_BIN:-$CARGO_TARGET_DIR/debug/catena}"
[ -x "$bin" ] || cargo build --workspace --all-targets
"$bin" ingest docs --store "$out/store" >&2
for mode in on off; do
  flag=()
  [ "$mode" = off ] && flag=(--no-defences)
  echo "== catena eval rag, defences $mode ($model answering and judging)" >&2
  /usr/bin/time -f "%e s" "$bin" eval rag --dataset benches/data/docs_qa.jsonl --store "$out/store" \
    --model "$model" --judge "$model" --metrics "$metrics" --concurrency 1 \
    --out "$out/$mode" "${flag[@]}" >&2
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
on, off = (json.load(open(f"{out}/{m}/summary.json")) for m in ("on", "off"))
print(f"{'metric':<20} {'defences on':>12} {'off':>8} {'on - off':>9}")
for metric in sorted(on["means"]):
    a, b = on["means"][metric], off["means"].get(metric)
    if a is None or b is None:
        continue
    print(f"{metric:<20} {a:>12.3f} {b:>8.3f} {a - b:>+9.3f}")
print(f"failed samples: on {on.get('failed')}, off {off.get('failed')}")
PY
