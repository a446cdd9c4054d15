#!/usr/bin/env bash
# Peak memory of azb itself (VmHWM of the azb process, not of the compilers it runs) while it
# builds the example project (tests/fixtures/demo) plus one large artifact, for both
# platforms with the host executor: a cold build (empty store), then a warm one (everything
# cached: lookups, dependency-free assembly of the image). Figures, not assertions.
# Needs the shared fixtures (scripts/test-fixtures.sh). Usage: benches/store-memory.sh [MiB]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
big_mib=${1:-128}
cargo build --release --locked --quiet
azb=${CARGO_TARGET_DIR:-$repo/target}/release/azb
work=$(mktemp -d /tmp/azb-bench-memory.XXXXXX)
trap 'rm -rf "$work"' EXIT
scripts/demo-upstreams.sh "$work/up" >/dev/null
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$work/up/"

mkdir -p "$work/project/stacks"
cp -r tests/fixtures/demo/recipes "$work/project/"
sed "s#\.\./\.\./\.\./cache#$repo/cache#g" tests/fixtures/demo/stacks/image.ron >"$work/project/stacks/image.ron"
# A large artifact that azb_dep depends on: incompressible data, so its tar, object and
# layer are all about $big_mib MiB.
commit=$(git -C "$work/up/azb_sql" rev-parse HEAD)
cat >"$work/project/recipes/azb_big.ron" <<EOF
Recipe(
    name: "azb_big",
    kind: Extension,
    source: Git(url: "https://example.invalid/azb-demo/azb_sql", commit: "$commit"),
    build: Script(script: "share=\$DESTDIR\$(\$PG_CONFIG --sharedir)/extension && mkdir -p \$share && cp azb_sql.control azb_sql--1.0.sql \$share/ && head -c ${big_mib}M /dev/urandom > \$share/azb_big.bin"),
    runtime: (create: false),
)
EOF
sed -i 's/depends: \["azb_hello"\]/depends: ["azb_hello", "azb_big"]/' "$work/project/recipes/azb_dep.ron"

# Runs azb and prints its peak resident memory in MiB (VmHWM, read until it exits).
peak() {
  "$azb" --quiet --project "$work/project" --cache-dir "$work/store" "$@" >/dev/null &
  local pid=$! hwm=0 kb
  while kb=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$kb" ]; do
    hwm=$kb
    sleep 0.02
  done
  wait "$pid"
  python3 -c "print(f'{$hwm / 1024:.0f}')"
}
cold=$(peak build --platform all --jobs 1 --output "oci:$work/out")
warm=$(peak build --platform all --jobs 1 --output "oci:$work/out")
echo "peak memory of azb, demo + a ${big_mib} MiB artifact, both platforms: cold build ${cold} MiB, warm (cached) build ${warm} MiB"
