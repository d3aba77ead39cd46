#!/usr/bin/env bash
# The security figures of docs/security.md: `catena redteam` on the local agent model (catena's
# own probes, defences off vs on, delimiting and datamarking), then garak against two
# `catena serve` endpoints of the same small model, one plain and one with --guard-output.
#
#   benches/redteam.sh [OUT]      (default benches/results/redteam)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}"
out="${1:-benches/results/redteam}"
mkdir -p "$out"
bin="$CARGO_TARGET_DIR/debug/catena"
for mode in delimit datamark; do
  echo "== catena redteam, local agent model, spotlighting $mode" >&2
  "$bin" redteam --model agent --spotlighting "$mode" --out "$out/catena-$mode" | tee "$out/catena-$mode.txt"
done

echo "== garak against catena serve (agent-small), plain and --guard-output" >&2
"$bin" serve --model agent-small --addr 127.0.0.1:8772 2>"$out/serve-plain.log" &
plain=$!
"$bin" serve --model agent-small --addr 127.0.0.1:8771 --guard-output 2>"$out/serve-guarded.log" &
guarded=$!
trap 'kill $plain $guarded 2>/dev/null || true' EXIT
for port in 8771 8772; do
  for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 1; done
done
garak_out="$(cd "$out" && pwd)"
(cd "$garak_out" && "$OLDPWD/scripts/garak/run.sh" http://127.0.0.1:8772/v1 chat garak-plain) | tee "$out/garak-plain.txt"
(cd "$garak_out" && "$OLDPWD/scripts/garak/run.sh" http://127.0.0.1:8771/v1 chat garak-guarded) | tee "$out/garak-guarded.txt"
