#!/usr/bin/env bash
# Coverage-guided fuzzing of catena's parsers (fuzz/, docs/reliability.md): builds the
# `catena-fuzz` libFuzzer binary with sanitizer coverage on stable Rust (libfuzzer-sys builds
# libFuzzer from source; the coverage flags are stable rustc codegen options), then runs each
# target for FUZZ_SECONDS (default 60) or FUZZ_RUNS executions, whichever comes first, with
# libFuzzer's limits of 1 s and 512 MB per input. New inputs go to a working corpus in the cache,
# seeded from fuzz/corpus/<target>/; crashes to fuzz/artifacts/<target>/. Prints, per target:
# executions, coverage (edges), corpus size and crashes.
#
#   scripts/fuzz.sh                    every target, 60 s each
#   FUZZ_SECONDS=1800 scripts/fuzz.sh  the figure of docs/reliability.md (30 min per target)
#   scripts/fuzz.sh sql_guard_sqlite cypher_guard
set -euo pipefail
cd "$(dirname "$0")/.."
# The SQL guard's PostgreSQL witness runs what the guard accepts on a real server: fuzz beside a
# throwaway one (CATENA_FUZZ_NO_PG=1 skips the witness where PostgreSQL is not installed).
if [ -z "${CATENA_PG_URL:-}" ] && [ -z "${CATENA_FUZZ_NO_PG:-}" ]; then
  exec scripts/with-postgres.sh "$0" "$@"
fi
seconds="${FUZZ_SECONDS:-60}"
runs="${FUZZ_RUNS:-10000000}"
cache="${CATENA_CACHE:-$HOME/.cache/catena}"
# Its own target folder: the coverage flags apply to every crate, so sharing the test build's
# folder would rebuild both each time.
export CARGO_TARGET_DIR="$cache/fuzz-target"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the flags off build scripts and proc macros, which run on the host
# and are not linked with libFuzzer.
host=$(rustc -vV | sed -n 's/^host: //p')
echo "fuzz: building the instrumented binary (first time: several minutes)" >&2
cargo build --release --target "$host" --package catena-fuzz --features libfuzzer --bin catena-fuzz --quiet
bin="$CARGO_TARGET_DIR/$host/release/catena-fuzz"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz/corpus)
fi
printf '%-22s %12s %8s %8s %8s %8s\n' target executions exec/s edges corpus crashes
total_crashes=0
for target in "${targets[@]}"; do
  [ -d "fuzz/corpus/$target" ] || { echo "fuzz: no target $target (see fuzz/corpus/)" >&2; exit 2; }
  work="$cache/fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$work" "$artifacts"
  log="$cache/fuzz/$target.log"
  # One process per target (no -fork): a crash ends that target's run, is reported, and the
  # next target starts.
  CATENA_FUZZ_TARGET="$target" "$bin" "$work" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -runs="$runs" -timeout=1 -rss_limit_mb=512 -max_len=65536 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || true
  executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  corpus=$(find "$work" "fuzz/corpus/$target" -type f | wc -l)
  crashes=$(find "$artifacts" -type f | wc -l)
  total_crashes=$((total_crashes + crashes))
  printf '%-22s %12s %8s %8s %8s %8s\n' "$target" "$executions" "$speed" "$edges" "$corpus" "$crashes"
done
if [ "$total_crashes" -gt 0 ]; then
  echo "fuzz: $total_crashes crashing inputs in fuzz/artifacts/ (logs in $cache/fuzz/); fix each, then" >&2
  echo "      add it to fuzz/corpus/<target>/ so make test replays it" >&2
  exit 1
fi
