#!/usr/bin/env bash
# Runs a command beside a private, throwaway PostgreSQL server on loopback and stops the server
# afterwards, whatever the command does. The command sees CATENA_PG_URL (a superuser URL for the
# `postgres` database); tests create and drop their own databases in it.
#   scripts/with-postgres.sh cargo test --test sql
# The server is PostgreSQL 18 with pgvector when scripts/fetch-data.sh has fetched it (the
# pgvector store's tests need the extension), else the system's PostgreSQL; CATENA_PG_VECTOR=1
# makes a missing pgvector build an error instead.
set -euo pipefail

DATA=${CATENA_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/catena/data}
bundle="$DATA/pgvector"
pg_bin=""
if [ -x "$bundle/pgserver/pginstall/bin/initdb" ]; then
  pg_bin="$bundle/pgserver/pginstall/bin"
elif [ "${CATENA_PG_VECTOR:-}" = 1 ]; then
  echo "error: PostgreSQL with pgvector is not fetched; run scripts/fetch-data.sh (make data)" >&2
  exit 1
elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
  pg_bin=$(dirname "$(command -v initdb)")
else
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
fi
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  echo "error: PostgreSQL's server programs (initdb, pg_ctl) are not installed; run scripts/setup.sh" \
       "(Debian: apt-get install postgresql)" >&2
  exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/catena-pg.XXXXXX")
# PostgreSQL refuses to run as root: run it as the `postgres` user (created by Debian's package).
run=()
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home postgres
  fi
  chown postgres "$dir"
  run=(runuser -u postgres --)
  # The postgres user may not be able to enter root's home, where the fetched build lives: run a
  # copy (about 40 MB, well under a second) from the server's own folder.
  if [ "$pg_bin" = "$bundle/pgserver/pginstall/bin" ]; then
    cp -a "$bundle" "$dir/pgvector"
    pg_bin="$dir/pgvector/pgserver/pginstall/bin"
  fi
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

stop() {
  "${run[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${run[@]}" "$pg_bin/initdb" -D "$dir/data" -U catena -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
"${run[@]}" "$pg_bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }

export CATENA_PG_URL="postgres://catena@127.0.0.1:$port/postgres"
echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
