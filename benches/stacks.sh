#!/usr/bin/env bash
# The Compose stacks, measured (figures, not assertions). Needs the shared fixtures
# (scripts/test-fixtures.sh), docker-compose and curl. Builds the example image
# (tests/fixtures/demo, amd64) and the companion images (stacks/pgbouncer.ron,
# stacks/exporter.ron), loads them under bench names, and on copies of stacks/:
#  - time from `docker-compose up -d` to every container healthy: single, primary, and a
#    replica joined to the primary;
#  - replication replay lag (pg_stat_replication.replay_lag, sampled every 0.2 s) while
#    pgbench writes on the primary for 30 s: p50 and p99;
#  - pgbench -C (a new connection per transaction, select-only, 8 clients, 20 s) straight
#    to PostgreSQL and through PgBouncer: tps and ratio.
# Everything it starts is removed at the end.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --locked --quiet
azb=${CARGO_TARGET_DIR:-$repo/target}/release/azb
bin=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}/pg18-amd64/bin
work=$(mktemp -d /tmp/azb-bench-stacks.XXXXXX)
projects=()
cleanup() {
  for p in "${projects[@]}"; do
    (cd "$work/stacks/${p%%:*}" && docker-compose -p "${p#*:}" down -v -t 5 >/dev/null 2>&1) || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
scripts/demo-upstreams.sh "$work/up" >/dev/null
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$work/up/"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building and loading the images..." >&2
"$azb" --project tests/fixtures/demo --cache-dir "$work/store" -q build --platform amd64 \
  --output "docker-archive:$work/postgres.tar" >/dev/null
for image in pgbouncer exporter; do
  "$azb" --cache-dir "$work/store" --image "stacks/$image.ron" -q build --platform amd64 \
    --output "docker-archive:$work/$image.tar" >/dev/null
done
for image in postgres pgbouncer exporter; do docker load -q -i "$work/$image.tar" >/dev/null; done
cp -R stacks "$work/stacks"

pw=bench-pw
pg_port=$(free_port) bouncer_port=$(free_port) exporter_port=$(free_port)
single_port=$(free_port) replica_port=$(free_port)
cat >"$work/stacks/primary/.env" <<EOF
AZB_IMAGE=azb/postgres-example:18
POSTGRES_PASSWORD=$pw
REPLICATION_PASSWORD=$pw
PGBOUNCER_AUTH_PASSWORD=$pw
POSTGRES_PORT=$pg_port
PGBOUNCER_PORT=$bouncer_port
EXPORTER_PORT=$exporter_port
EOF
cat >"$work/stacks/single/.env" <<EOF
AZB_IMAGE=azb/postgres-example:18
POSTGRES_PASSWORD=$pw
POSTGRES_PORT=$single_port
EOF
primary_project=azbbench$$primary
cat >"$work/stacks/replica/.env" <<EOF
AZB_IMAGE=azb/postgres-example:18
PRIMARY_HOST=postgres
PRIMARY_NETWORK=${primary_project}_default
REPLICATION_PASSWORD=$pw
REPLICA_PORT=$replica_port
EOF

# up_healthy STACK PROJECT [compose files...]: seconds from `up -d` to all healthy.
up_healthy() {
  local stack=$1 project=$2
  shift 2
  local files=()
  for f in "$@"; do files+=(-f "$f"); done
  projects+=("$stack:$project")
  cd "$work/stacks/$stack"
  local start
  start=$(now)
  docker-compose -p "$project" "${files[@]}" up -d >/dev/null 2>&1
  local ids
  ids=$(docker-compose -p "$project" "${files[@]}" ps -q)
  for _ in $(seq 1200); do
    # shellcheck disable=SC2086 # one id a word
    if ! docker inspect -f '{{.State.Health.Status}}' $ids | grep -qv '^healthy$'; then
      secs "$start" "$(now)"
      cd "$repo"
      return 0
    fi
    sleep 0.25
  done
  echo "$stack: not healthy within 300 s" >&2
  return 1
}

echo "stack    up -> healthy"
echo "single   $(up_healthy single "azbbench$$single" compose.yml) s"
echo "primary  $(up_healthy primary "$primary_project" compose.yml) s"
echo "replica  $(up_healthy replica "azbbench$$replica" compose.yml compose.dev.yml) s"

export PGPASSWORD=$pw PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1
"$bin/pgbench" -q -i -s 10 -p "$pg_port" >/dev/null 2>&1

# Replay lag under 30 s of writes.
"$bin/pgbench" -p "$pg_port" -c 4 -j 2 -T 30 -n >"$work/write.log" 2>&1 &
writer=$!
: >"$work/lag"
while kill -0 "$writer" 2>/dev/null; do
  "$bin/psql" -X -At -p "$pg_port" -c \
    "SELECT COALESCE(EXTRACT(EPOCH FROM replay_lag) * 1000, 0) FROM pg_stat_replication" \
    >>"$work/lag" 2>/dev/null || true
  sleep 0.2
done
wait "$writer"
write_tps=$(grep -o 'tps = [0-9.]*' "$work/write.log" | head -1 | cut -d' ' -f3)
python3 - "$work/lag" "$write_tps" <<'EOF'
import sys
lags = sorted(float(l) for l in open(sys.argv[1]) if l.strip())
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))]
print(f"replay lag under pgbench writes ({sys.argv[2]} tps, 30 s, {len(lags)} samples): "
      f"p50 {pick(0.5):.1f} ms, p99 {pick(0.99):.1f} ms")
EOF

# Many short connections: direct against PgBouncer.
"$bin/psql" -X -q -p "$pg_port" -c "CREATE ROLE bench LOGIN PASSWORD '$pw'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench" >/dev/null
tps() {
  PGUSER=bench "$bin/pgbench" -p "$1" -C -S -c 8 -j 2 -T 20 -n 2>&1 |
    grep -o 'tps = [0-9.]*' | head -1 | cut -d' ' -f3
}
direct=$(tps "$pg_port")
pooled=$(tps "$bouncer_port")
python3 -c "print(f'pgbench -C -S, 8 clients, 20 s: direct {float(\"$direct\"):.0f} tps, through PgBouncer {float(\"$pooled\"):.0f} tps, ratio {float(\"$pooled\") / float(\"$direct\"):.2f}x')"
