#!/usr/bin/env bash
# The shared fixtures the integration tests need, prepared once per machine: both
# PostgreSQL 18 toolchains (scripts/fetch-toolchain.sh all), both base images
# (scripts/make-base-image.sh amd64 and arm64, built side by side; rebuilt when
# scripts/base-image/ changes), and cargo-pgrx 0.16.1
# with the pgrx fixture's crates (scripts/fetch-pgrx.sh; minutes the first time). What
# exists is skipped, so a second call takes milliseconds. Safe to call from several test
# processes at once (one lock around the whole, and each step locks too). Prints nothing
# on the way; its last line of output is `ok` on success. Needs scripts/setup-host.sh to
# have run. --without-pgrx leaves cargo-pgrx out (the example build needs none).
# Usage: scripts/test-fixtures.sh [--without-pgrx]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
toolchains=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}
bases=${AZB_BASE_IMAGES_DIR:-$repo/cache/base}

ready() {
  [ -x "$toolchains/pg18-amd64/bin/pg_config" ] && [ -x "$toolchains/pg18-arm64/bin/pg_config" ] &&
    "$repo/scripts/make-base-image.sh" --check amd64 && "$repo/scripts/make-base-image.sh" --check arm64
}

prepare() {
  "$repo/scripts/fetch-toolchain.sh" all
  local pids=() arch pid failed=0
  for arch in amd64 arm64; do
    "$repo/scripts/make-base-image.sh" "$arch" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" -eq 0 ] || { echo "test-fixtures: a base image failed to build (see above)" >&2; exit 1; }
}

if ! ready; then
  mkdir -p "$bases"
  (
    flock 9
    ready || prepare
  ) 9>"$bases/.test-fixtures.lock"
fi
# cargo-pgrx and the crates of the pgrx fixture (skipped in milliseconds when present).
if [ "${1:-}" != --without-pgrx ]; then
  "$repo/scripts/fetch-pgrx.sh" --crates "$repo/tests/fixtures/extensions/azb_pgrx/Cargo.toml" 0.16.1
fi
echo ok
