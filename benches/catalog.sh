#!/usr/bin/env bash
# `azb recipe check` and `azb plan` on the real catalog (recipes/, 40 recipes, both
# platforms: 60 derivations), with hyperfine (figures, not assertions; targets: under
# 50 ms and 100 ms). The store is empty and the sources unreachable: both commands work
# from the recipes and toolchains alone. Needs the shared toolchains
# (scripts/test-fixtures.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release --locked --quiet
azb_bin=${CARGO_TARGET_DIR:-$repo/target}/release/azb
work=$(mktemp -d /tmp/azb-bench-catalog.XXXXXX)
trap 'rm -rf "$work"' EXIT
azb="$azb_bin --project $repo --cache-dir $work/store --quiet"
export AZB_SOURCE_MIRRORS="https://github.com/=$work/unreachable/"
$azb recipe check
echo "derivations planned: $($azb plan --json | jq '.derivations | length')"
hyperfine --warmup 5 --runs 50 -N "$azb recipe check" "$azb plan" "$azb plan --json"
