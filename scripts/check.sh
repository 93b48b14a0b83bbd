#!/usr/bin/env bash
# What CI runs (.ci/run): formatting, lints as errors, the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
