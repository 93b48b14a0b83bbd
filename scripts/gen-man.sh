#!/usr/bin/env bash
# Regenerates docs/echoloop.1, docs/echoloop-<subcommand>.1 and docs/completions/* from the clap
# definitions in src/cli/. Run it after changing the command line; tests/it/manpage.rs checks it was.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f docs/echoloop*.1
cargo run --quiet --example gen_man -- docs
