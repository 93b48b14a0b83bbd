#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind: repeatable on a busy machine
# (the count does not depend on what else runs), so it is the before/after measure of a hot-path
# change. The kernel's work is not counted: pair it with scripts/pairs.sh for CPU time.
# Loopback only; every process started here is stopped by its PID; the script stops by itself.
#
#   scripts/instructions.sh [--connections N] [--size BYTES] [--pipeline K] [--rounds R]
#                           [--baseline BINARY] [--no-build]
#
# For each build (this one, and --baseline if given), alternating, --rounds times (default 2):
# the server runs under `valgrind --tool=callgrind`, driven by `echoloop load --warmup 0 -d 4
# --threads 1` running natively; Ir/msg = (its Ir - the Ir of a run with no clients) / the
# messages answered, so start-up and shutdown are not spread over the messages. Prints one line
# per run and the median per build.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=50
SIZE=64
PIPELINE=1
ROUNDS=2
BASELINE=
BUILD=1
usage() {
    echo "usage: scripts/instructions.sh [--connections N] [--size BYTES] [--pipeline K] [--rounds R] [--baseline BINARY] [--no-build]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) CONNECTIONS="${2:-}"; shift ;;
        --size) SIZE="${2:-}"; shift ;;
        --pipeline) PIPELINE="${2:-}"; shift ;;
        --rounds) ROUNDS="${2:-}"; shift ;;
        --baseline) BASELINE="${2:-}"; shift ;;
        --no-build) BUILD=0 ;;
        *) usage ;;
    esac
    shift
done
for n in "$CONNECTIONS" "$SIZE" "$PIPELINE" "$ROUNDS"; do
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || usage
done
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "scripts/instructions.sh: --baseline needs an echoloop executable" >&2; exit 2; }
command -v valgrind > /dev/null || { echo "scripts/instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/echoloop-instructions.XXXXXX)
SERVER_PID=
cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
[ "$BUILD" = 1 ] && cargo build --release
LOAD=target/release/echoloop

# run BINARY NAME CLIENTS(0|1): the server under callgrind; prints its Ir and messages answered.
run() {
    local out="$WORK/$2"
    valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$1" serve -l 127.0.0.1:0 \
        > "$out.listen" 2> "$out.err" &
    SERVER_PID=$!
    for _ in $(seq 600); do grep -q '^listening tcp' "$out.listen" 2> /dev/null && break; sleep 0.05; done
    local addr msgs=0
    addr=$(awk '/^listening tcp/ {print $3; exit}' "$out.listen")
    [ -n "$addr" ] || { echo "scripts/instructions.sh: $1 did not start" >&2; exit 1; }
    if [ "$3" = 1 ]; then
        "$LOAD" load "$addr" -c "$CONNECTIONS" -s "$SIZE" --pipeline "$PIPELINE" -d 4 --warmup 0 \
            --threads 1 --json > "$out.json" 2> /dev/null
        msgs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['messages_received'])" "$out.json")
    fi
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2> /dev/null || true; SERVER_PID=
    echo "$(awk '/^summary:/ {print $2; exit}' "$out.cg") $msgs"
}

declare -A results
builds=(echoloop ${BASELINE:+baseline})
binary() { if [ "$1" = baseline ]; then echo "$BASELINE"; else echo target/release/echoloop; fi; }
for name in "${builds[@]}"; do
    read -r idle _ < <(run "$(binary "$name")" "$name-idle" 0)
    results[$name-idle]=$idle
done
for round in $(seq "$ROUNDS"); do
    for name in "${builds[@]}"; do
        read -r ir msgs < <(run "$(binary "$name")" "$name-$round" 1)
        per=$(python3 -c "import sys; ir, idle, m = map(int, sys.argv[1:]); print(f'{(ir - idle) / m:.1f}')" \
            "$ir" "${results[$name-idle]}" "$msgs")
        echo "round $round: $name: $ir Ir, idle ${results[$name-idle]} Ir, $msgs messages: $per Ir/msg"
        results[$name]="${results[$name]:-} $per"
    done
done
echo "$CONNECTIONS connections x $SIZE B x pipeline $PIPELINE, median of $ROUNDS rounds:"
for name in "${builds[@]}"; do
    # shellcheck disable=SC2086
    python3 -c "import statistics, sys; print(f'  {sys.argv[1]}: {statistics.median(map(float, sys.argv[2:])):.1f} Ir/msg')" \
        "$name" ${results[$name]}
done
