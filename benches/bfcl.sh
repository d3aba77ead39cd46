#!/usr/bin/env bash
# BFCL single-turn function calling (benches/bfcl.py): catena serve with the model's native tool
# format and with the generic JSON format it used before, and llama-cpp-python's tool calling on
# the same GGUF, in one run.
#   benches/bfcl.sh OUT.jsonl [CASES_PER_CATEGORY (10)] [MODELS ("agent")]
set -euo pipefail
out="$1"; cases="${2:-10}"; models="${3:-agent}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}"
bin="$CARGO_TARGET_DIR/debug/catena"
venv="$(benches/setup-python.sh)"
# The benchmark's data and checker, as its PyPI wheel ships them (unpacked, not installed: its
# provider SDKs are not needed to score).
bfcl="$HOME/.cache/catena/bfcl-eval-2026.3.23"
if [ ! -d "$bfcl/bfcl_eval" ]; then
  wheels="$(mktemp -d)"
  python3 -m pip download -q --no-deps bfcl-eval==2026.3.23 -d "$wheels"
  python3 -m zipfile -e "$wheels"/bfcl_eval-2026.3.23-py3-none-any.whl "$bfcl"
fi
: > "$out"
port=8093
for model in $models; do
  gguf="$("$bin" models pull "$model" | awk '{print $2}')"
  for format in hermes generic; do
    echo "== bfcl: catena serve --model $model --tool-format $format" >&2
    "$bin" serve --addr "127.0.0.1:$port" --model "$model" --tool-format "$format" --parallel 1 2>/dev/null &
    server=$!
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
    python3 benches/bfcl.py "$bfcl" "$cases" openai "catena $model $format" "http://127.0.0.1:$port/v1" \
      | tee -a "$out" | grep '"summary"' >&2 || true
    kill "$server"; wait "$server" 2>/dev/null || true
  done
  echo "== bfcl: llama-cpp-python (chatml-function-calling) on $model" >&2
  "$venv/bin/python" benches/bfcl.py "$bfcl" "$cases" llama-cpp-python "llama-cpp-python $model" "$gguf" \
    | tee -a "$out" | grep '"summary"' >&2 || true
done
