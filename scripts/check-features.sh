#!/usr/bin/env bash
# Checks that every crate builds with no default features and with each of its features alone
# (cargo-hack), so a feature that only compiles in the company of the others is caught. The GPU
# features need their vendor toolkits and are left out. `cargo check` without dev-dependencies:
# type-checking is what breaks between feature sets, and it reuses the shared target folder.
#   scripts/check-features.sh            every crate
#   scripts/check-features.sh -p catena-query
set -euo pipefail
cd "$(dirname "$0")/.."

HACK_VERSION=0.6.46
if ! cargo hack --version 2>/dev/null | grep -q "$HACK_VERSION"; then
  echo "check-features: installing cargo-hack $HACK_VERSION (once)" >&2
  cargo install --locked --quiet cargo-hack --version "$HACK_VERSION"
fi

packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
  # catena-fuzz's one feature is the libFuzzer engine, built (with its coverage flags) by make fuzz.
  packages=(--workspace --exclude catena-fuzz)
fi
# A warning in one feature set (an import only another feature uses) fails the check too: the
# shared target folder is not rebuilt with -D warnings, so the output is read instead.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo hack check "${packages[@]}" --each-feature --no-dev-deps --quiet \
  --exclude-features cuda,vulkan,metal 2>&1 | tee "$log" || status=$?
# (cargo-hack's own note that a package lacks one of the excluded GPU features is not a warning
# about the code.)
if [ "$status" -eq 0 ] && grep '^warning' "$log" | grep -qv '^warning: specified feature'; then
  echo "check-features: a feature combination builds with warnings (above)" >&2
  status=1
fi
exit "$status"
