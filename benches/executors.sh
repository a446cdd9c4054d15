#!/usr/bin/env bash
# Builder containers against the host executor (figures, not assertions). Needs the shared
# fixtures (scripts/test-fixtures.sh), Docker and mmdebstrap. Prints:
#  1. making a builder image (amd64, a build_packages set no other run uses) cold, and the
#     second run that finds it (`azb build` of one recipe needing it, store warm);
#  2. per-derivation overhead of the docker executor: the three demo extensions
#     (tests/fixtures/demo) built cold (empty store, builder images present) with each
#     executor, one job at a time, per platform; (docker - host) / 3.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --locked --quiet
azb=${CARGO_TARGET_DIR:-$repo/target}/release/azb
work=$(mktemp -d /tmp/azb-bench-executors.XXXXXX)
trap 'rm -rf "$work"' EXIT
scripts/demo-upstreams.sh "$work/up" >/dev/null
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$work/up/"

# The demo project twice: as committed (host executor) and with builder containers.
for kind in host docker; do
  mkdir -p "$work/$kind"
  cp -r tests/fixtures/demo/recipes "$work/$kind/"
  mkdir -p "$work/$kind/stacks"
  sed "s#\.\./\.\./\.\./cache#$repo/cache#g" tests/fixtures/demo/stacks/image.ron >"$work/$kind/stacks/image.ron"
done
python3 - "$work/docker/stacks/image.ron" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'toolchain: Host\(\s*prefix: "([^"]*)",[^)]*\)', r'toolchain: Docker(prefix: Some("\1"))', text)
open(path, "w").write(text)
PY
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# 1. A builder image, cold and cached: a recipe asking for a package no other run asks for.
mkdir -p "$work/image/recipes" "$work/image/stacks"
cp "$work/docker/stacks/image.ron" "$work/image/stacks/"
sed 's/build_packages: \[\]/build_packages: ["libyaml-dev"]/; s/depends: \[\]/depends: [], build_packages: ["libyaml-dev"]/' \
  tests/fixtures/demo/recipes/azb_sql.ron >"$work/image/recipes/azb_sql.ron"
"$azb" --project "$work/image" --cache-dir "$work/store-image" lock update 2>/dev/null
tag=$("$azb" --project "$work/image" --cache-dir "$work/store-image" plan --json --platform amd64 |
  python3 -c 'import json,sys; b=json.load(sys.stdin)["derivations"][0]["builder"]; print("azb-builder:" + b.split(":")[1][:32])')
docker image rm --force "$tag" >/dev/null 2>&1 || true
start=$(now)
"$azb" --quiet --project "$work/image" --cache-dir "$work/store-image" build --platform amd64
cold=$(secs "$start" "$(now)")
rm -rf "$work/store-image"
start=$(now)
"$azb" --quiet --project "$work/image" --cache-dir "$work/store-image" build --platform amd64
warm=$(secs "$start" "$(now)")
echo "builder image (amd64, base + libyaml-dev): first build ${cold}s (image made), second ${warm}s (image found)"

# 2. Executor overhead, cold store, builder images already made.
cp "$work/image/builders.lock" "$work/docker/" 2>/dev/null || true
"$azb" --project "$work/docker" --cache-dir "$work/store-warmup" lock update 2>/dev/null
"$azb" --quiet --project "$work/docker" --cache-dir "$work/store-warmup" build --platform all --jobs 1
for platform in amd64 arm64; do
  for kind in host docker; do
    rm -rf "$work/store-$kind"
    start=$(now)
    "$azb" --quiet --project "$work/$kind" --cache-dir "$work/store-$kind" build --platform "$platform" --jobs 1
    eval "t_$kind=$(secs "$start" "$(now)")"
  done
  # shellcheck disable=SC2154 # set by eval above
  echo "$platform: 3 demo derivations cold, one job: host ${t_host}s, docker ${t_docker}s, overhead $(python3 -c "print(f'{($t_docker - $t_host) / 3:.2f}')")s per derivation"
done

# 3. arm64 cross-compiled in the amd64 builder against the same recipes built in the
#    emulated arm64 builder (emulate_arm64), cold store, one job; builder images made first.
mkdir -p "$work/emulated"
cp -r "$work/docker/recipes" "$work/docker/stacks" "$work/emulated/"
for recipe in "$work"/emulated/recipes/*.ron; do
  sed -i 's/    depends:/    emulate_arm64: true,\n    depends:/' "$recipe"
done
"$azb" --project "$work/emulated" --cache-dir "$work/store-warmup-emulated" lock update 2>/dev/null
"$azb" --quiet --project "$work/emulated" --cache-dir "$work/store-warmup-emulated" build --platform arm64 --jobs 1
for kind in docker emulated; do
  rm -rf "$work/store-$kind"
  start=$(now)
  "$azb" --quiet --project "$work/$kind" --cache-dir "$work/store-$kind" build --platform arm64 --jobs 1
  eval "a_$kind=$(secs "$start" "$(now)")"
done
# shellcheck disable=SC2154 # set by eval above
echo "arm64, 3 demo derivations cold, one job: cross ${a_docker}s, emulated ${a_emulated}s, ratio $(python3 -c "print(f'{$a_emulated / $a_docker:.1f}')")x"
