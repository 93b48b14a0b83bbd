#!/usr/bin/env bash
# Attacks replayed: issue 18's list of attacks on a public echoloop, tried on loopback, with
# before/after figures (server CPU seconds, peak RSS, another client's round-trip p99, and the
# attack's own figure). The work is in scripts/attack.py, which says what each attack measures.
#
#   scripts/attack.sh [--baseline BIN] [--no-build] [--only 1,2,...]
#   AFTER=BIN scripts/attack.sh --no-build ...     (another build as the after column)
#
# "after" is target/release/echoloop, built here unless --no-build; "before" is BIN, an old
# echoloop that knows none of the new flags (only the binary under test gets them). Without
# --baseline only the after column is printed. Servers run with `--trusted none`, because
# loopback is trusted by default and trusted sources skip the per-source limits.
#
# Bounded (about a minute per binary), loopback only, every process stopped by its PID. Attack 1
# forges a datagram's source address with a raw socket and needs root; without root its rows
# say "skipped: needs root". The table is Markdown, ready for docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=()
build=1
only=()
while [ $# -gt 0 ]; do
    case "$1" in
        --baseline) baseline=(--baseline "$(realpath "$2")"); shift 2 ;;
        --no-build) build=0; shift ;;
        --only) only=(--only "$2"); shift 2 ;;
        *) echo "usage: scripts/attack.sh [--baseline BIN] [--no-build] [--only 1,2,...]" >&2; exit 2 ;;
    esac
done

if [ "$build" = 1 ]; then
    cargo build --release --quiet
fi
after=$(realpath "${AFTER:-target/release/echoloop}")
[ -x "$after" ] || { echo "attack.sh: $after is missing (build it, or drop --no-build)" >&2; exit 2; }
label="$after"
if [ -z "${AFTER:-}" ]; then
    label="target/release/echoloop (commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ', src modified'))"
fi

# 2,000 connections from one source, and the server holding them: raise the descriptor limit
# (the servers started by attack.py inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# On a machine shared with builds, a server at the default priority gets a sliver of a core and
# every figure measures the builds instead. As root the whole run (servers, attackers, prober)
# goes to nice -10; the header says which priority the figures were taken at.
priority=()
if [ "$(id -u)" -eq 0 ]; then
    priority=(nice -n -10)
fi
# timeout: a bound on the whole run even if an attack hangs; attack.py stops its servers on SIGTERM.
exec "${priority[@]}" timeout --signal=TERM 300 \
    python3 scripts/attack.py --after "$after" --after-label "$label" "${baseline[@]}" "${only[@]}"
