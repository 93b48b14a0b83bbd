#!/usr/bin/env bash
# What CI runs (.ci/run): formatting, lints as errors, the whole test suite; and the rustdoc
# tour must build without warnings (broken intra-doc links are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps
scripts/test.sh
