#!/usr/bin/env bash
# Builds the base image azb puts extensions on (no registry is reachable, so it is made
# here), for one architecture, as an OCI image layout directory holding exactly one
# manifest, tagged (org.opencontainers.image.ref.name) `pg18`:
#   - a Debian bookworm root file system from mmdebstrap (variant minbase; apt sources are
#     the host's own; arm64 runs through qemu-user binfmt) with PostgreSQL's runtime
#     libraries and tzdata;
#   - PostgreSQL 18.6 from the toolchain (scripts/fetch-toolchain.sh) in Debian's layout:
#     /usr/lib/postgresql/18/{bin,lib}, /usr/share/postgresql/18, and the symlink
#     /usr/lib/postgresql/18/share -> /usr/share/postgresql/18 (the relocatable binaries
#     look for share/ beside bin/); its lib dir is in the dynamic linker's path (libpq);
#   - user and group `postgres` (999), /var/lib/postgresql and /var/run/postgresql (2775);
#   - /usr/local/bin/docker-entrypoint.sh from scripts/base-image/.
# Config: Entrypoint [docker-entrypoint.sh], Cmd [postgres], 5432/tcp, SIGINT, PGDATA, PATH.
# Output: OUT_DIR (default ${AZB_BASE_IMAGES_DIR:-<repo>/cache/base}/pg18-<arch>), built in a
# temporary directory beside it and renamed into place; skipped when OUT_DIR/index.json
# exists and OUT_DIR.inputs holds the digest of this script and scripts/base-image/ (so an
# edited entrypoint rebuilds the image); a lock (OUT_DIR.lock) makes concurrent callers
# safe. SOURCE_DATE_EPOCH (default: a fixed date) sets every timestamp, so the same
# packages give the same image digest. Quiet unless something fails.
# `--check` only tells (exit status 0 or 1) whether OUT_DIR is there and up to date.
# Usage: scripts/make-base-image.sh [--check] amd64|arm64 [OUT_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: make-base-image.sh [--check] amd64|arm64 [OUT_DIR]"
check_only=false
if [ "${1:-}" = --check ]; then check_only=true; shift; fi
arch=${1:?$usage}
case "$arch" in amd64 | arm64) ;; *) echo "$usage" >&2; exit 2 ;; esac
out=${2:-${AZB_BASE_IMAGES_DIR:-$repo/cache/base}/pg18-$arch}
out=${out%/}
toolchain=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}/pg18-$arch
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1750000000}

die() { echo "make-base-image: $*" >&2; exit 1; }

# The host's apt sources (deb822 preferred), fed to mmdebstrap on stdin.
apt_sources() {
  local f
  if [ -n "${AZB_APT_SOURCES:-}" ]; then echo "$AZB_APT_SOURCES"; return; fi
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then echo /etc/apt/sources.list.d/debian.sources; return; fi
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
    [ -s "$f" ] && { echo "$f"; return; }
  done
  die "no apt sources found in /etc/apt"
}

build() {
  local work
  work=$(mktemp -d "$(dirname "$out")/.base-pg18-$arch.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf '$work'" EXIT
  local log=$work/log
  run() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; die "failed: $*"; }; }

  "$repo/scripts/fetch-toolchain.sh" "$arch"

  # Runs on the host with the root file system's path as $1 (arm64 chroot commands run
  # under qemu-user).
  cat >"$work/customize.sh" <<EOF
#!/bin/sh
set -eu
root=\$1
toolchain='$toolchain'
pg=\$root/usr/lib/postgresql/18
mkdir -p "\$pg" "\$root/usr/share/postgresql"
cp -R --preserve=mode,timestamps,links "\$toolchain/bin" "\$toolchain/lib" "\$pg/"
# build-time only: static libraries, PGXS, pkg-config files
rm -rf "\$pg/lib/pgxs" "\$pg/lib/pkgconfig" "\$pg"/lib/*.a
cp -R --preserve=mode,timestamps,links "\$toolchain/share" "\$root/usr/share/postgresql/18"
rm -rf "\$root/usr/share/postgresql/18/doc"
ln -s /usr/share/postgresql/18 "\$pg/share"
chown -R 0:0 "\$pg" "\$root/usr/share/postgresql"
# libpq for libpqwalreceiver, dblink, postgres_fdw (their RUNPATH is the builder's)
echo /usr/lib/postgresql/18/lib >"\$root/etc/ld.so.conf.d/postgresql.conf"
chroot "\$root" /sbin/ldconfig
# PL/Python is left out: its libraries need libpython3.11 and Python's standard library
# (about 30 MB), and an untrusted language is not a default of a production image.
rm -f "\$pg"/lib/*plpython3.so "\$root"/usr/share/postgresql/18/extension/*plpython3u*
# Every program and library of PostgreSQL finds what it links against in this image
# (a library missing at run time fails here, not at CREATE EXTENSION).
missing=\$(chroot "\$root" /bin/sh -c 'for f in /usr/lib/postgresql/18/bin/* /usr/lib/postgresql/18/lib/*.so; do
  ldd "\$f" 2>/dev/null | sed -n "s|^[[:space:]]*\\([^ ]*\\) => not found|\$f: \\1|p"; done')
[ -z "\$missing" ] || { echo "make-base-image: libraries missing in the image:" >&2; echo "\$missing" >&2; exit 1; }

install -m 0755 '$repo/scripts/base-image/docker-entrypoint.sh' "\$root/usr/local/bin/docker-entrypoint.sh"
mkdir -p "\$root/docker-entrypoint-initdb.d"

echo 'postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash' >>"\$root/etc/passwd"
echo 'postgres:*:::::::' >>"\$root/etc/shadow"
echo 'postgres:x:999:' >>"\$root/etc/group"
echo 'postgres:!::' >>"\$root/etc/gshadow"
# /var/run is a symlink to /run (absolute: never follow it from the host). mmdebstrap's
# own /run cleanup is skipped (it would remove /run/postgresql); this is the same cleanup.
for entry in "\$root"/run/* "\$root"/run/.[!.]*; do
  [ -e "\$entry" ] || [ -L "\$entry" ] || continue
  [ "\$entry" = "\$root/run/lock" ] || rm -rf --one-file-system "\$entry"
done
mkdir -p "\$root/var/lib/postgresql" "\$root/run/postgresql"
chown 999:999 "\$root/var/lib/postgresql" "\$root/run/postgresql"
chmod 0755 "\$root/var/lib/postgresql"
chmod 2775 "\$root/run/postgresql"

# smaller, and the same on every host
rm -rf "\$root"/var/lib/apt/lists/* "\$root"/var/cache/apt/* "\$root"/var/cache/debconf/*-old \
  "\$root"/var/log/* "\$root"/usr/share/doc/* "\$root"/usr/share/man/* "\$root"/usr/share/info/* \
  "\$root"/usr/share/lintian "\$root"/etc/resolv.conf "\$root"/etc/hostname
EOF
  chmod +x "$work/customize.sh"

  # The merged-usr hook installs usr-is-merged, not usrmerge (which would pull in perl).
  run mmdebstrap --quiet --variant=minbase --arch="$arch" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=cleanup/run \
    --include=libssl3,libxml2,libxslt1.1,libzstd1,liblz4-1,libgssapi-krb5-2,zlib1g,libreadline8,libossp-uuid16,tzdata \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="$work/customize.sh" \
    bookworm "$work/rootfs.tar" - <"$(apt_sources)"

  local oci=$work/oci created
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  run umoci init --layout "$oci"
  run umoci new --image "$oci:pg18"
  run umoci raw add-layer --image "$oci:pg18" --history.created "$created" \
    --history.created_by "mmdebstrap bookworm (minbase) + PostgreSQL 18.6 ($arch)" "$work/rootfs.tar"
  run umoci config --image "$oci:pg18" --no-history --created "$created" \
    --os linux --architecture "$arch" \
    --config.entrypoint docker-entrypoint.sh --config.cmd postgres \
    --config.env PATH=/usr/lib/postgresql/18/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env PG_MAJOR=18 --config.env PGDATA=/var/lib/postgresql/18/docker \
    --config.env LANG=C.UTF-8 \
    --config.exposedports 5432/tcp --config.stopsignal SIGINT \
    --config.volume /var/lib/postgresql
  run umoci gc --layout "$oci"

  # exactly one manifest, tagged pg18, for this platform
  local got
  got=$(jq -r '[.manifests[] | .annotations["org.opencontainers.image.ref.name"]] | join(",")' "$oci/index.json")
  [ "$got" = pg18 ] || die "index.json lists manifests [$got], expected [pg18]"
  got=$(skopeo inspect --config "oci:$oci:pg18" 2>>"$log" | jq -r '.os + "/" + .architecture') ||
    { cat "$log" >&2; die "skopeo cannot read the image"; }
  [ "$got" = "linux/$arch" ] || die "image platform is $got, expected linux/$arch"

  chmod -R a+rX "$oci" # umoci writes 0600 files
  rm -rf "$out" # an incomplete earlier attempt, or a stale image
  mv -T "$oci" "$out"
  rm -rf "$work"
  trap - EXIT
}

# What the image is made from, besides the Debian packages and the toolchain.
inputs=$(cat "$repo/scripts/make-base-image.sh" "$repo"/scripts/base-image/* | sha256sum | cut -d' ' -f1)
fresh() { [ -f "$out/index.json" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; }

if [ "$check_only" = true ]; then fresh; exit; fi
fresh && exit 0
mkdir -p "$(dirname "$out")"
(
  flock 9
  if ! fresh; then
    build
    echo "$inputs" >"$out.inputs"
  fi
) 9>"$out.lock"
