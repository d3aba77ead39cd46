#!/usr/bin/env bash
# The agent task suite (examples/data/agent_tasks.jsonl) for each local model and protocol:
# success rate and seconds per answer, one JSON line per task and a summary per configuration.
#   benches/agent_tasks.sh OUT.jsonl [CONFIG...]   CONFIG = "MODEL PROTOCOL [AGENT FLAGS...]"
set -euo pipefail
out="$1"; shift
agent="${CARGO_TARGET_DIR:-$HOME/.cache/catena/target}/debug/examples/agent"
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=(
    "agent native"                                   # the default: first call required, 2 tools offered
    "agent native --first-call auto --select-tools 0" # the same model without those helps
    "agent react"
    "agent-small native"
    "agent-small react"
    "chat native"
    "chat react"
  )
fi
: > "$out"
for config in "${configs[@]}"; do
  read -r -a words <<< "$config"
  echo "== agent tasks: ${config}" >&2
  python3 benches/agent_tasks.py "$agent" examples/data/agent_tasks.jsonl "${words[0]}" "${words[1]}" 4 "${words[@]:2}" \
    | tee -a "$out" | grep '"summary"' >&2 || true
done
