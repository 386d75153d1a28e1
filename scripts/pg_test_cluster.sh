#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL cluster on 127.0.0.1 for the tests, as the non-root
# `postgres` user, with Debian's packages. Prints the URL to export as RLHF_GYM_TEST_PG_URL.
#   eval "$(bash scripts/pg_test_cluster.sh start)"   ...   bash scripts/pg_test_cluster.sh stop
set -euo pipefail
DIR="${RLHF_GYM_PG_DIR:-/tmp/rlhf-gym-pg}"
PORT="${RLHF_GYM_PG_PORT:-55432}"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -n "$PGBIN" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
case "${1:-start}" in
  start)
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      mkdir -p "$DIR"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
      as_pg "'$PGBIN/initdb' -D '$DIR/data' -A trust -U postgres -E UTF8 >'$DIR/initdb.log' 2>&1"
    fi
    as_pg "'$PGBIN/pg_ctl' -D '$DIR/data' status >/dev/null 2>&1" || as_pg "'$PGBIN/pg_ctl' -D '$DIR/data' -l '$DIR/server.log' -w -t 60 \
      -o \"-c listen_addresses=127.0.0.1 -p $PORT -k '$DIR' -c fsync=on -c max_connections=200\" start >/dev/null" \
      || { cat "$DIR/server.log" >&2; exit 1; }
    echo "export RLHF_GYM_TEST_PG_URL=postgresql://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    [ -f "$DIR/data/postmaster.pid" ] && as_pg "'$PGBIN/pg_ctl' -D '$DIR/data' -m fast -w stop >/dev/null" || true
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
