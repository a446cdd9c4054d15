#!/usr/bin/env bash
# pgbench through PgBouncer against pgbench straight to PostgreSQL (figures, not
# assertions). Sets up what the PgBouncer tests do (tests/it/pgbouncer.rs), from
# cache/toolchains/pg18-amd64 and Debian's pgbouncer: a PostgreSQL 18 server on 127.0.0.1
# (SCRAM-SHA-256 over TCP), the primary stack's 03-pgbouncer-auth.sh, and pgbouncer started
# by the stack's entrypoint.sh (transaction pooling). Both servers run as uid 65534. Then
# `pgbench -i -s SCALE` and a select-only run of each kind, and prints both TPS and their
# ratio. Needs root (initdb and pgbouncer refuse it, so they run through setpriv).
#
#   BENCH_SCALE (5), BENCH_CLIENTS (8), BENCH_THREADS (2), BENCH_SECONDS (10)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
toolchain=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}/pg18-amd64
scale=${BENCH_SCALE:-5}
clients=${BENCH_CLIENTS:-8}
threads=${BENCH_THREADS:-2}
seconds=${BENCH_SECONDS:-10}
uid=65534
[ -x "$toolchain/bin/postgres" ] || { echo "no toolchain at $toolchain; run scripts/test-fixtures.sh" >&2; exit 1; }
command -v pgbouncer >/dev/null || PATH=$PATH:/usr/sbin
command -v pgbouncer >/dev/null || { echo "pgbouncer is not installed (scripts/setup-host.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/azb-bench-pgbouncer.XXXXXX)
chmod 755 "$work"
pg=$work/pg
bouncer_pid=
cleanup() {
  [ -z "$bouncer_pid" ] || kill "$bouncer_pid" 2>/dev/null || true
  [ -z "$bouncer_pid" ] || wait "$bouncer_pid" 2>/dev/null || true
  [ ! -d "$work/run/data" ] || as_user "$pg/bin/pg_ctl" -D "$work/run/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
as_user() { setpriv --reuid "$uid" --regid "$uid" --clear-groups "$@"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cp -al "$toolchain" "$pg"
mkdir -p "$work/run" "$work/bouncer/home" "$work/bouncer/conf" "$work/bouncer/sock"
chown -R "$uid:$uid" "$work/run" "$work/bouncer"
pg_port=$(free_port)
bouncer_port=$(free_port)
password="bench:pass\\word @&'\"x"

# PostgreSQL: the stack's rules (trust on the socket, SCRAM over TCP).
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$work/run/pg_hba.conf"
chown "$uid:$uid" "$work/run/pg_hba.conf"
as_user "$pg/bin/initdb" -D "$work/run/data" -U postgres --auth=trust --no-sync >/dev/null
as_user "$pg/bin/pg_ctl" -D "$work/run/data" -l "$work/run/log" -w -t 300 \
  -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -k $work/run -c hba_file=$work/run/pg_hba.conf -c max_connections=100" \
  start >/dev/null
export PGHOST=$work/run PGPORT=$pg_port
"$pg/bin/psql" -X -q -U postgres -d postgres -v ON_ERROR_STOP=1 -v pw="$password" <<'SQL'
CREATE DATABASE bench;
SET password_encryption = 'scram-sha-256';
CREATE ROLE bench LOGIN PASSWORD :'pw';
ALTER DATABASE bench OWNER TO bench;
SQL
PATH=$pg/bin:$PATH POSTGRES_USER=postgres POSTGRES_DB=bench PGBOUNCER_AUTH_PASSWORD=$password \
  sh "$repo/stacks/primary/initdb.d/03-pgbouncer-auth.sh"
unset PGHOST PGPORT

# PgBouncer, started by the stack's entrypoint.
env -i PATH=/usr/sbin:/usr/bin:/bin HOME="$work/bouncer/home" \
  POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$pg_port" POSTGRES_DB=bench \
  PGBOUNCER_AUTH_PASSWORD="$password" PGBOUNCER_LISTEN_ADDR=127.0.0.1 \
  PGBOUNCER_PORT="$bouncer_port" PGBOUNCER_UNIX_SOCKET_DIR="$work/bouncer/sock" \
  PGBOUNCER_CONFIG_DIR="$work/bouncer/conf" \
  setpriv --reuid "$uid" --regid "$uid" --clear-groups \
  sh "$repo/stacks/primary/pgbouncer/entrypoint.sh" 2>"$work/bouncer/log" &
bouncer_pid=$!

export PGPASSWORD=$password PGUSER=bench PGDATABASE=bench PGHOST=127.0.0.1
for _ in $(seq 1 200); do
  "$pg/bin/psql" -X -q -p "$bouncer_port" -c 'SELECT 1' >/dev/null 2>&1 && break
  kill -0 "$bouncer_pid" 2>/dev/null || { cat "$work/bouncer/log" >&2; exit 1; }
  sleep 0.05
done
"$pg/bin/psql" -X -q -p "$bouncer_port" -c 'SELECT 1' >/dev/null || { cat "$work/bouncer/log" >&2; exit 1; }

"$pg/bin/pgbench" -q -i -s "$scale" -p "$pg_port" >/dev/null 2>&1
tps() {
  "$pg/bin/pgbench" -n -S -c "$clients" -j "$threads" -T "$seconds" -p "$1" 2>&1 |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
direct=$(tps "$pg_port")
pooled=$(tps "$bouncer_port")
if [ -z "$direct" ] || [ -z "$pooled" ]; then
  echo "pgbench failed" >&2
  cat "$work/bouncer/log" >&2
  exit 1
fi
echo "pgbench -S -c $clients -j $threads -T $seconds (scale $scale), PostgreSQL $("$pg/bin/postgres" --version | awk '{print $3}'), $(pgbouncer --version | head -1)"
printf 'direct    (:%s)  %10.1f tps\n' "$pg_port" "$direct"
printf 'pgbouncer (:%s)  %10.1f tps\n' "$bouncer_port" "$pooled"
awk -v a="$pooled" -v b="$direct" 'BEGIN { printf "ratio pgbouncer/direct: %.2f\n", a / b }'
