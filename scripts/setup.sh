#!/usr/bin/env bash
# Installs what building and testing catena needs on a fresh Debian/Ubuntu machine, or says
# exactly what to install by hand. Safe to run again: it only installs what is missing.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

have cmake || need_apt+=(cmake)
have clang || need_apt+=(clang)
# bindgen (llama-cpp-sys-2) needs libclang itself, not just the compiler.
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' && ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  need_apt+=(libclang-dev)
fi
have protoc || need_apt+=(protobuf-compiler)
have python3 || need_apt+=(python3)
# Node.js runs the real MCP servers the MCP tests talk to (scripts/fetch-data.sh installs them).
have node || need_apt+=(nodejs)
have npm || need_apt+=(npm)
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# venv: the Python MCP SDK, a second client of catena's MCP server in the tests, lives in one.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# PostgreSQL's server programs: the text-to-SQL tests start a private server (scripts/with-postgres.sh).
have initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# Headless Chromium: the eval report test renders report.html and reads the browser's console.
have chromium-headless-shell || have chromium || need_apt+=(chromium-headless-shell)

if ! have cargo; then
  echo "error: cargo is not installed. Install Rust (rustup), then run this again." >&2
  exit 1
fi

if [ ${#need_apt[@]} -eq 0 ]; then
  exit 0
fi

echo "catena needs: ${need_apt[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if have sudo && sudo -n true 2>/dev/null; then SUDO="sudo"; fi
fi
if ! have apt-get || { [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; }; then
  echo "error: cannot install them here (no apt-get, or no root/sudo). Install by hand, e.g.:" >&2
  echo "  sudo apt-get install -y ${need_apt[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
echo "installed: ${need_apt[*]}" >&2
