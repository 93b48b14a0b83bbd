#!/usr/bin/env bash
# The README's test command: the whole test suite, the tests that drive other programs included.
#
#   scripts/test.sh [cargo test arguments...]
#
# Some integration tests drive programs that a fresh machine may lack (systemd-socket-activate,
# promtool, haproxy, python3) or need root (a tmpfs, a port below 1024). They are marked
# `#[ignore = "needs ..."]`, so a plain `cargo test` lists them as ignored rather than passing them
# untested. This script installs the missing programs from Debian's packages (as root), then runs
# `cargo test -- --include-ignored`, where each such test fails, never passes, without what it
# needs. Not root: nothing is installed, and the two tests that need root are skipped, saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v systemd-socket-activate > /dev/null 2>&1 || missing+=(systemd)
command -v promtool > /dev/null 2>&1 || missing+=(prometheus)
command -v haproxy > /dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v python3 > /dev/null 2>&1 || missing+=(python3)

skip=()
if [ "$(id -u)" -eq 0 ]; then
    if [ ${#missing[@]} -gt 0 ]; then
        echo "scripts/test.sh: installing ${missing[*]} for the tests that drive them"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" > /dev/null
    fi
else
    [ ${#missing[@]} -eq 0 ] ||
        echo "scripts/test.sh: not root, so ${missing[*]} cannot be installed: the tests needing them will fail"
    echo "scripts/test.sh: not root: skipping the two tests that need root"
    skip=(--skip files::a_full_disk --skip udp::datagrams_from_a_loop_port)
fi
cargo test "$@" -- --include-ignored "${skip[@]}"
