#!/usr/bin/env bash
# The shared fixtures the test suite needs, prepared once per machine (each step locks
# and skips what exists, so concurrent callers are safe): both PostgreSQL 18 toolchains
# and both base images. Prints `ok` when done.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/fetch-toolchain.sh" all
"$repo/scripts/make-base-image.sh" amd64
"$repo/scripts/make-base-image.sh" arm64
echo ok
