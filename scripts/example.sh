#!/usr/bin/env bash
# The quick start: on a fresh machine of this kind, installs what azb needs, builds the
# example image (tests/fixtures/demo) for linux/amd64 and linux/arm64 into out/example
# (an OCI layout), writes the amd64 image as a docker-archive and loads it into Docker.
# Says what it is doing as it goes; a fresh machine spends most of the time on the first
# two steps (Debian packages; the PostgreSQL 18 toolchains and base images).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf 'example: [%s/6] %s\n' "$1" "$2" >&2; }
step 1 "installing the Debian packages and Rust components azb needs (scripts/setup-host.sh)"
scripts/setup-host.sh
step 2 "PostgreSQL 18 toolchains and base images for amd64 and arm64 (scripts/test-fixtures.sh)"
scripts/test-fixtures.sh --without-pgrx >/dev/null
step 3 "building azb (cargo build --release)"
cargo build --release --locked
step 4 "making the example's upstream git repositories (scripts/demo-upstreams.sh)"
scripts/demo-upstreams.sh cache/demo-upstreams >/dev/null
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$PWD/cache/demo-upstreams/"
azb=(target/release/azb --project tests/fixtures/demo --cache-dir cache)
step 5 "planning and building the example image for amd64 and arm64"
"${azb[@]}" plan
"${azb[@]}" build --platform all --output oci:out/example
step 6 "writing the amd64 image as a docker-archive and loading it into Docker"
"${azb[@]}" build --platform amd64 --output docker-archive:out/example-amd64.tar
docker load -i out/example-amd64.tar
echo "example image: OCI layout in out/example (amd64 + arm64), docker image loaded (see above)"
