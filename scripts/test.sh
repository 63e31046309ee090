#!/usr/bin/env bash
# The project's test command: installs the real servers the tests need, then checks
# formatting, lints and runs every test. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-servers.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test "$@"
