#!/bin/sh
# The base image's entrypoint: the usual contract of PostgreSQL images.
#   POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER, POSTGRES_DB,
#   POSTGRES_INITDB_ARGS; scripts in /docker-entrypoint-initdb.d run once, in order, on
#   the first start. Anything other than `postgres ...` (or `-flags`) runs as given.
set -eu

PGDATA=${PGDATA:-/var/lib/postgresql/18/docker}
export PGDATA

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

case "${1:-postgres}" in
  -*) set -- postgres "$@" ;;
esac
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    log "the database is not initialised and POSTGRES_PASSWORD is not set."
    log "set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without a password)"
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    ${POSTGRES_INITDB_ARGS:-} >&2
  rm -f "$pwfile"

  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start >&2
  run_psql() { psql -X -v ON_ERROR_STOP=1 --username "$user" --no-password --host /var/run/postgresql "$@"; }
  if [ "$db" != postgres ]; then
    run_psql --dbname postgres --set db="$db" -c 'CREATE DATABASE :"db"' >&2
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case "$f" in
      *.sh)
        if [ -x "$f" ]; then log "running $f"; "$f"; else log "sourcing $f"; . "$f"; fi ;;
      *.sql) log "running $f"; run_psql --dbname "$db" -f "$f" >&2 ;;
      *.sql.gz) log "running $f"; gzip -dc "$f" | run_psql --dbname "$db" >&2 ;;
      *) log "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >&2

  method=scram-sha-256
  [ "${POSTGRES_HOST_AUTH_METHOD:-}" = trust ] && method=trust
  printf 'host all all all %s\n' "$method" >> "$PGDATA/pg_hba.conf"
  log "initialised $PGDATA"
fi

shift
exec postgres -c listen_addresses='*' "$@"
