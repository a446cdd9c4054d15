#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests need, prepares the shared
# fixtures, checks formatting and lints, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh
scripts/test-fixtures.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
