#!/bin/sh
# healthcheck.sh: the PgBouncer container's health check (primary stack). Logs in through
# PgBouncer (not its admin console) to the real database and asks the server which
# database it is in; healthy when that is POSTGRES_DB. The password comes from the
# .pgpass entrypoint.sh wrote (PGPASSFILE, else $HOME/.pgpass); SCRAM-SHA-256 is required.
#
#   PGBOUNCER_HEALTHCHECK_HOST     default 127.0.0.1
#   PGBOUNCER_PORT                 default 6432
#   PGBOUNCER_HEALTHCHECK_USER     default $PGBOUNCER_AUTH_USER, else pgbouncer_auth
#   POSTGRES_DB                    the database, default postgres
#   PGBOUNCER_HEALTHCHECK_TIMEOUT  seconds to wait for the answer, default 4 (below the
#                                  compose file's 5 s): PgBouncer keeps a query for a
#                                  server it cannot reach waiting up to query_wait_timeout
#                                  (120 s), so without a bound a check could hang that long
#   PSQL                           default psql
set -eu

db=${POSTGRES_DB:-postgres}
limit=${PGBOUNCER_HEALTHCHECK_TIMEOUT:-4}
case "$limit" in
  '' | *[!0-9]* | 0)
    printf 'healthcheck: PGBOUNCER_HEALTHCHECK_TIMEOUT must be a whole number of seconds above 0, got %s\n' "$limit" >&2
    exit 1
    ;;
esac
set -- "${PSQL:-psql}" -X -w -A -t -q -v ON_ERROR_STOP=1 \
  -h "${PGBOUNCER_HEALTHCHECK_HOST:-127.0.0.1}" -p "${PGBOUNCER_PORT:-6432}" \
  -U "${PGBOUNCER_HEALTHCHECK_USER:-${PGBOUNCER_AUTH_USER:-pgbouncer_auth}}" -d "$db" \
  -c 'SELECT current_database()'
# coreutils' or busybox's timeout; without one, the orchestrator's own timeout still applies.
if command -v timeout >/dev/null 2>&1; then
  set -- timeout "$limit" "$@"
fi
status=0
got=$(PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-$limit} PGREQUIREAUTH=scram-sha-256 "$@") || status=$?
if [ "$status" = 124 ]; then
  printf 'healthcheck: no answer from database %s through PgBouncer within %s s\n' "$db" "$limit" >&2
  exit 1
elif [ "$status" != 0 ]; then
  printf 'healthcheck: database %s is not reachable through PgBouncer (psql exit %s)\n' "$db" "$status" >&2
  exit 1
fi
if [ "$got" != "$db" ]; then
  printf 'healthcheck: expected database %s through PgBouncer, got %s\n' "$db" "$got" >&2
  exit 1
fi
