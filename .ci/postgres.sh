#!/usr/bin/env bash
# Install (when missing) and start a local PostgreSQL server for lrkit's sweep tests, make a role
# and a database, and print the URL as a shell export. Idempotent: run it as often as you like.
#
#   eval "$(.ci/postgres.sh)"        # sets LRKIT_TEST_POSTGRES_URL for the tests
#
# Needs root (apt-get, pg_ctlcluster) on Debian/Ubuntu. Settings, all optional:
#   LRKIT_PG_USER (lrkit), LRKIT_PG_PASSWORD (lrkit), LRKIT_PG_DB (lrkit), LRKIT_PG_PORT (5432)
# Progress goes to stderr; stdout carries only the export line.
set -euo pipefail

PG_USER=${LRKIT_PG_USER:-lrkit}
PG_PASSWORD=${LRKIT_PG_PASSWORD:-lrkit}
PG_DB=${LRKIT_PG_DB:-lrkit}
PG_PORT=${LRKIT_PG_PORT:-5432}
URL="postgresql://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/${PG_DB}"

log() { echo "postgres.sh: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin)" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
BIN=$(pg_bin)
VERSION=$(basename "$(dirname "$BIN")")

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
    log "creating cluster $VERSION/main on port $PG_PORT"
    pg_createcluster --port "$PG_PORT" "$VERSION" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}' | grep -q online; then
    log "starting cluster $VERSION/main"
    pg_ctlcluster "$VERSION" main start >&2
fi

for _ in $(seq 1 60); do
    if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then break; fi
    sleep 0.5
done
"$BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >&2 || { log "server did not come up"; exit 1; }

psql_admin() { runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '${PG_USER}'")" != "1" ]; then
    log "creating role $PG_USER"
    psql_admin -c "CREATE ROLE \"${PG_USER}\" LOGIN PASSWORD '${PG_PASSWORD}'" >&2
else
    psql_admin -c "ALTER ROLE \"${PG_USER}\" LOGIN PASSWORD '${PG_PASSWORD}'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '${PG_DB}'")" != "1" ]; then
    log "creating database $PG_DB"
    psql_admin -c "CREATE DATABASE \"${PG_DB}\" OWNER \"${PG_USER}\"" >&2
fi

log "ready: $URL"
echo "export LRKIT_TEST_POSTGRES_URL=${URL}"
