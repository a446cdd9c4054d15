#!/usr/bin/env bash
# Installs cargo-pgrx, pinned per version, where azb looks for it: the store's tools
# directory, ${AZB_TOOLS_DIR:-<repo>/cache/tools}/cargo-pgrx-<version>/bin/cargo-pgrx (the
# default store is cache/, so `azb build` finds it there). This is the same
# `cargo install --locked` that azb runs itself in its fetch phase when a recipe's
# cargo-pgrx is missing; running it ahead lets tests and CI share the slow compile (minutes).
# With --crates MANIFEST (a Cargo.toml beside a Cargo.lock), it also fills the crate cache
# ${AZB_TOOLS_DIR:-<repo>/cache/tools}/cargo-home with that project's locked dependencies
# (`cargo fetch --locked`; a stamp per Cargo.lock content skips it next time), for tests
# that seed a fresh store from it.
# Each version is installed into a temporary directory beside the target and renamed into
# place; what is present is skipped; a lock per version makes concurrent callers safe.
# Quiet unless something fails.
# Usage: scripts/fetch-pgrx.sh [--crates MANIFEST]... [VERSION...]   (default 0.16.1)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${AZB_TOOLS_DIR:-$repo/cache/tools}

die() { echo "fetch-pgrx: $*" >&2; exit 1; }

versions=()
manifests=()
while [ $# -gt 0 ]; do
  case "$1" in
    --crates) manifests+=("${2:?--crates needs a Cargo.toml}"); shift 2 ;;
    -*) die "unknown option $1 (usage: fetch-pgrx.sh [--crates MANIFEST]... [VERSION...])" ;;
    *) versions+=("$1"); shift ;;
  esac
done
[ "${#versions[@]}" -gt 0 ] || versions=(0.16.1)
command -v cargo >/dev/null || die "cargo is not on PATH (install Rust with rustup)"
mkdir -p "$dir"

install() {
  local version=$1 target=$2 work
  work=$(mktemp -d "$dir/.install-cargo-pgrx-$version.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf '$work'" EXIT
  cargo install --quiet --locked --root "$work/root" cargo-pgrx --version "=$version" \
    >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; die "cargo install cargo-pgrx $version failed"; }
  local out
  out=$("$work/root/bin/cargo-pgrx" pgrx --version 2>&1) || die "the new cargo-pgrx does not run: $out"
  [ "$out" = "cargo-pgrx $version" ] || die "cargo-pgrx --version printed: $out"
  rm -f "$work/root/.crates.toml" "$work/root/.crates2.json"
  mv -T "$work/root" "$target"
  rm -rf "$work"
  trap - EXIT
}

for version in "${versions[@]}"; do
  [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not a version: $version"
  target=$dir/cargo-pgrx-$version
  [ -x "$target/bin/cargo-pgrx" ] && continue
  (
    flock 9
    [ -x "$target/bin/cargo-pgrx" ] || install "$version" "$target"
  ) 9>"$target.lock"
done

# A stamp per Cargo.lock content skips what was fetched before.
for manifest in "${manifests[@]}"; do
  lock=$(dirname "$manifest")/Cargo.lock
  [ -f "$lock" ] || die "$manifest has no Cargo.lock beside it"
  stamp=$dir/cargo-home/fetched-$(sha256sum "$lock" | cut -c1-32)
  [ -f "$stamp" ] && continue
  (
    flock 9
    [ -f "$stamp" ] && exit 0
    CARGO_HOME=$dir/cargo-home cargo fetch --quiet --locked --manifest-path "$manifest" \
      >"$dir/cargo-home.log" 2>&1 || { cat "$dir/cargo-home.log" >&2; die "cargo fetch for $manifest failed"; }
    rm -f "$dir/cargo-home.log"
    touch "$stamp"
  ) 9>"$dir/cargo-home.lock"
done
