#!/usr/bin/env bash
# The quick start: on a fresh machine of this kind, installs what azb needs, builds the
# example image (tests/fixtures/demo) for linux/amd64 and linux/arm64 into out/example
# (an OCI layout), writes the amd64 image as a docker-archive and loads it into Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
scripts/test-fixtures.sh
cargo build --release --locked
scripts/demo-upstreams.sh cache/demo-upstreams >/dev/null
export AZB_SOURCE_MIRRORS="https://example.invalid/azb-demo/=$PWD/cache/demo-upstreams/"
azb=(target/release/azb --project tests/fixtures/demo --cache-dir cache)
"${azb[@]}" plan
"${azb[@]}" build --platform all --output oci:out/example
"${azb[@]}" build --platform amd64 --output docker-archive:out/example-amd64.tar
docker load -i out/example-amd64.tar
echo "example image: OCI layout in out/example (amd64 + arm64), docker image loaded (see above)"
