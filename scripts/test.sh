#!/usr/bin/env bash
# The project's test command: installs the real servers the tests need, then checks
# formatting, lints and runs every test. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s)
phase() { echo "test.sh: $1 at +$(( $(date +%s) - t0 )) s" >&2; }
scripts/install-test-servers.sh
phase "servers installed"
cargo fmt --check
cargo clippy --all-targets -- -D warnings
phase "clippy done"
cargo test --no-run "$@"
phase "tests built"
cargo test "$@"
phase "tests done"
