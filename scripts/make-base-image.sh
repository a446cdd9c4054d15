#!/usr/bin/env bash
# Builds the base image azb puts extensions on (no registry is reachable here, so it is
# made locally): a Debian bookworm root file system from mmdebstrap with PostgreSQL 18 from
# the toolchain (scripts/fetch-toolchain.sh) in Debian's layout, a `postgres` user (999)
# and scripts/base-image/docker-entrypoint.sh; written as an OCI image layout with one
# manifest tagged `pg18`.
# Usage: scripts/make-base-image.sh amd64|arm64 [OUT_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:?usage: make-base-image.sh amd64|arm64 [OUT_DIR]}
case "$arch" in amd64|arm64) ;; *) echo "unknown architecture $arch" >&2; exit 2 ;; esac
out=${2:-${AZB_BASE_IMAGES_DIR:-$repo/cache/base}/pg18-$arch}
toolchain=${AZB_TOOLCHAINS_DIR:-$repo/cache/toolchains}/pg18-$arch
[ -f "$out/index.json" ] && exit 0
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
[ -f "$out/index.json" ] && exit 0
"$repo/scripts/fetch-toolchain.sh" "$arch"

work=$(mktemp -d "$(dirname "$out")/.base-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list

# Runs inside mmdebstrap with the root file system as $1.
hook="set -e
root=\$1
mkdir -p \"\$root/usr/lib/postgresql/18\" \"\$root/usr/share/postgresql\"
cp -a '$toolchain/bin' '$toolchain/lib' \"\$root/usr/lib/postgresql/18/\"
rm -rf \"\$root/usr/lib/postgresql/18/lib/pgxs\"
cp -a '$toolchain/share' \"\$root/usr/share/postgresql/18\"
rm -rf \"\$root/usr/share/postgresql/18/doc\"
ln -s /usr/share/postgresql/18 \"\$root/usr/lib/postgresql/18/share\"
install -m 0755 '$repo/scripts/base-image/docker-entrypoint.sh' \"\$root/usr/local/bin/docker-entrypoint.sh\"
mkdir -p \"\$root/docker-entrypoint-initdb.d\"
chroot \"\$root\" groupadd -r -g 999 postgres
chroot \"\$root\" useradd -r -u 999 -g postgres -d /var/lib/postgresql -s /bin/sh postgres
# /var/run/postgresql lives on /run (a tmpfs at run time): the entrypoint makes it.
mkdir -p \"\$root/var/lib/postgresql/18\"
chroot \"\$root\" chown -R postgres:postgres /var/lib/postgresql
rm -rf \"\$root\"/var/lib/apt/lists/* \"\$root\"/var/cache/apt/* \"\$root\"/usr/share/doc/* \"\$root\"/usr/share/man/*"

mmdebstrap --quiet --variant=minbase --arch="$arch" \
  --include=libssl3,libxml2,libxslt1.1,libzstd1,liblz4-1,libgssapi-krb5-2,zlib1g,libreadline8,libossp-uuid16,tzdata \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook="$hook" \
  bookworm "$work/rootfs.tar" - < "$sources"

umoci init --layout "$work/oci"
umoci new --image "$work/oci:pg18"
umoci raw add-layer --image "$work/oci:pg18" "$work/rootfs.tar"
umoci config --image "$work/oci:pg18" --os linux --architecture "$arch" \
  --config.entrypoint docker-entrypoint.sh --config.cmd postgres \
  --config.env PATH=/usr/lib/postgresql/18/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PGDATA=/var/lib/postgresql/18/docker --config.env PG_MAJOR=18 --config.env LANG=C.UTF-8 \
  --config.exposedports 5432/tcp --config.stopsignal SIGINT --config.volume /var/lib/postgresql \
  --history.created_by "scripts/make-base-image.sh $arch"
umoci gc --layout "$work/oci"
skopeo inspect "oci:$work/oci:pg18" > /dev/null
mv "$work/oci" "$out"
