#!/usr/bin/env bash
# Runs garak (NVIDIA's LLM vulnerability scanner, pinned) against an OpenAI-compatible endpoint,
# a `catena serve` or any other, with the probe families whose data ship inside garak's package
# (nothing is fetched from a model hub: HF_HUB_OFFLINE is set, so a probe or detector that needs
# a hub model fails instead of hanging).
#
#   scripts/garak/run.sh URL MODEL OUT_PREFIX [PROBES]
#
# garak pulls torch, transformers and dozens of provider SDKs (about 12 minutes and 6 GB on a
# fresh machine), so it lives in its own cached environment, installed on first use: never by
# `make test`, only by `make redteam` / `make bench`.
set -euo pipefail
url="$1" model="$2" prefix="$3"
probes="${4:-promptinject.HijackHateHumans,latentinjection.LatentInjectionReport,latentinjection.LatentInjectionFactSnippetEiffel,web_injection.MarkdownImageExfil,web_injection.MarkdownXSS,encoding.InjectBase64}"
env_dir="${CATENA_GARAK_ENV:-$HOME/.cache/catena/garak}"
version="0.17.1"
if ! "$env_dir/bin/garak" --version 2>/dev/null | grep -q "$version"; then
  echo "installing garak $version into $env_dir (once; pulls torch and transformers)" >&2
  python3 -m venv "$env_dir" >&2
  "$env_dir/bin/pip" install --disable-pip-version-check -q "garak==$version" >&2
fi
config="$(mktemp --suffix=.yaml)"
trap 'rm -f "$config"' EXIT
# One greedy generation per prompt, at most 8 prompts per probe: a CPU-sized run. catena serve
# ignores no parameter silently, so the ones it does not take are suppressed.
cat > "$config" <<YAML
run:
  generations: 1
  soft_probe_prompt_cap: 8
plugins:
  generators:
    openai:
      OpenAICompatible:
        uri: $url
        api_key: none
        temperature: 0
        max_tokens: 150
        suppressed_params: [n, frequency_penalty, presence_penalty, stop, top_p, seed]
YAML
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$env_dir/bin/garak" --config "$config" \
  --model_type openai.OpenAICompatible --model_name "$model" --probes "$probes" \
  --report_prefix "$prefix"
