#!/usr/bin/env bash
# Keeps the shared target folder from filling the disk: every rebuild of a test or example binary
# (a feature or dependency change) leaves the old ~500 MB executable behind under a new hash.
# Deletes all but the newest executable of each name in debug/deps and debug/examples, and the
# incremental caches when less than 20 GB are free. Safe at any time: cargo rebuilds what it needs.
set -euo pipefail
target="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}"
[ -d "$target/debug" ] || exit 0
python3 - "$target/debug" <<'PY'
import collections, os, sys
debug = sys.argv[1]
freed = 0
for sub in ("deps", "examples"):
    folder = os.path.join(debug, sub)
    if not os.path.isdir(folder):
        continue
    groups = collections.defaultdict(list)
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        # Executables only: no extension, a cargo hash suffix, and big.
        if "." in name or "-" not in name or not os.path.isfile(path) or os.path.getsize(path) < 20_000_000:
            continue
        groups[name.rsplit("-", 1)[0]].append((os.path.getmtime(path), path))
    for files in groups.values():
        for _, path in sorted(files)[:-1]:
            freed += os.path.getsize(path)
            os.remove(path)
if freed:
    print(f"prune-target: removed {freed / 1e9:.1f} GB of superseded binaries", file=sys.stderr)
PY
free_kb=$(df -Pk "$target" | awk 'NR == 2 {print $4}')
if [ "$free_kb" -lt $((20 * 1024 * 1024)) ] && [ -d "$target/debug/incremental" ]; then
  echo "prune-target: less than 20 GB free; removing the incremental caches" >&2
  rm -rf "$target/debug/incremental"
fi
