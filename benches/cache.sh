#!/usr/bin/env bash
# The remote cache, measured (figures, not assertions). Needs the shared fixtures
# (scripts/test-fixtures.sh) and what scripts/setup-host.sh installs (weed, docker-registry).
# For each backend (file://, s3:// on SeaweedFS, oci:// on docker-registry, all on loopback):
#  - machine A: cold build of the example project (tests/fixtures/demo) for both platforms,
#    host executor, then `azb cache push` of it;
#  - machine B (empty store, other directory): the same build from the warm remote;
# and, with substituters configured and everything in the store, a no-op `azb build`
# (hyperfine: it makes no remote call).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --locked --quiet
azb=${CARGO_TARGET_DIR:-$repo/target}/release/azb
work=$(mktemp -d /tmp/azb-bench-cache.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/demo-upstreams.sh "$work/up" >/dev/null
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$work/up/"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

project() {
  mkdir -p "$1/stacks"
  cp -r tests/fixtures/demo/recipes "$1/"
  sed "s#\.\./\.\./\.\./cache#$repo/cache#g" tests/fixtures/demo/stacks/image.ron >"$1/stacks/image.ron"
}

# The servers.
mkdir -p "$work/s3"
cat >"$work/s3/s3.json" <<EOF
{"identities":[{"name":"azb","credentials":[{"accessKey":"bench","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
EOF
weed=$(command -v weed || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/weed")
ports=()
for _ in 1 2 3 4 5; do ports+=("$(free_port)"); done
"$weed" mini -dir="$work/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port="${ports[0]}" \
  -volume.port="${ports[1]}" -filer.port="${ports[2]}" -s3.port="${ports[3]}" -admin.port="${ports[4]}" \
  -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.config="$work/s3/s3.json" -bucket=azb-cache >"$work/s3.log" 2>&1 &
pids+=($!)
s3_endpoint="http://127.0.0.1:${ports[3]}"
ready curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user bench:benchsecret -I "$s3_endpoint/azb-cache"
reg_port=$(free_port)
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$reg_port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
ready curl -sf "http://127.0.0.1:$reg_port/v2/"
export AWS_ENDPOINT=$s3_endpoint AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret \
  AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
echo "s3 (SeaweedFS) at $s3_endpoint, registry at 127.0.0.1:$reg_port" >&2

public=$("$azb" --project "$repo/tests/fixtures/demo" cache keygen bench --out "$work/bench.key")
export AZB_SIGNING_KEY_FILE=$work/bench.key AZB_TRUSTED_KEYS=$public
for url in "file://$work/file-cache" "s3://azb-cache/bench" "oci://127.0.0.1:$reg_port/azb/bench"; do
  name=${url%%:*}
  project "$work/$name-a"
  project "$work/$name-b"
  start=$(now)
  "$azb" --quiet --project "$work/$name-a" --cache-dir "$work/$name-a/store" build --platform all --jobs 2
  cold=$(secs "$start" "$(now)")
  start=$(now)
  "$azb" --quiet --project "$work/$name-a" --cache-dir "$work/$name-a/store" cache push --to "$url" >/dev/null
  pushed=$(secs "$start" "$(now)")
  start=$(now)
  AZB_SUBSTITUTERS=$url "$azb" --project "$work/$name-b" --cache-dir "$work/$name-b/store" build --platform all --jobs 2 2>"$work/$name-b.log"
  warm=$(secs "$start" "$(now)")
  summary=$(grep '^azb: .* built' "$work/$name-b.log")
  echo "$name: A cold ${cold}s, push ${pushed}s, B from the remote ${warm}s ($(python3 -c "print(f'{$cold / $warm:.1f}')")x; B: ${summary#azb: })"
done
AZB_SUBSTITUTERS="s3://azb-cache/bench oci://127.0.0.1:$reg_port/azb/bench" \
  hyperfine --warmup 2 --runs 20 --style basic --export-json "$work/noop.json" \
  "$azb --quiet --project $work/s3-b --cache-dir $work/s3-b/store build --platform all" >/dev/null 2>&1
python3 - "$work/noop.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"no-op build, both platforms, two substituters configured: mean {r['mean'] * 1000:.1f} ms, max {r['max'] * 1000:.1f} ms")
PY
