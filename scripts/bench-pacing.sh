#!/usr/bin/env bash
# Pacing benchmark (issue 20, item 2): how close does `echoloop load --rate` send to its schedule?
#
#   scripts/bench-pacing.sh [--before BIN] [--after BIN] [--repeat N] [--duration SECS]
#
# One `echoloop serve` (the --after binary, echo, raw framing) pinned to CPU 0; each load pinned
# to CPU 1 with one connection and one thread. For each load binary (before: a build of main
# without the microsecond alarm; after: this tree) it measures, --repeat times (default 3):
#   - the closed loop (--pipeline 1): p50 latency, which is one round trip;
#   - the open loop at --rate 1000, 2000, 10000 and 50000 (--pipeline 8, so that one connection
#     may have several messages in flight at the higher rates): p50 latency from the *intended*
#     send time.
# With perfect pacing the open-loop p50 equals the round trip; every microsecond a message waits
# for the load generator to wake adds to it. The table gives the median over the rounds of each
# p50, and the open-loop p50 over the closed-loop p50 of the same binary and round.
# Loopback only; the server is stopped by its PID; nothing runs under `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

AFTER=target/release/echoloop
BEFORE=
REPEAT=3
DURATION=3
while [ $# -gt 0 ]; do
    case "$1" in
        --before) BEFORE=$2; shift 2 ;;
        --after) AFTER=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        *) echo "usage: scripts/bench-pacing.sh [--before BIN] [--after BIN] [--repeat N] [--duration SECS]" >&2; exit 2 ;;
    esac
done
[ -x "$AFTER" ] || { echo "bench-pacing: build first: cargo build --release" >&2; exit 2; }

PORT=$((20000 + RANDOM % 20000))
taskset -c 0 "$AFTER" serve -l "127.0.0.1:$PORT" >/dev/null 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
sleep 0.5

# p50 of one run: BIN, then extra arguments.
p50() {
    local bin=$1; shift
    taskset -c 1 "$bin" load --json -c 1 --threads 1 -d "$DURATION" --warmup 0.5 "$@" "127.0.0.1:$PORT" 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_us"]["p50"])'
}

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

RATES="1000 2000 10000 50000"
TSV=$(mktemp)
for round in $(seq "$REPEAT"); do
    for name in before after; do
        bin=$AFTER
        if [ "$name" = before ]; then
            [ -n "$BEFORE" ] || continue
            bin=$BEFORE
        fi
        closed=$(p50 "$bin" --pipeline 1)
        printf '%s\t%s\tclosed\t%s\t1\n' "$round" "$name" "$closed" >>"$TSV"
        for rate in $RATES; do
            open=$(p50 "$bin" --pipeline 8 --rate "$rate")
            ratio=$(awk -v o="$open" -v c="$closed" 'BEGIN {printf "%.2f", o / c}')
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rate" "$open" "$ratio" >>"$TSV"
        done
    done
done

echo "| load | closed loop p50 µs | $(for r in $RATES; do printf '%s/s p50 µs (× closed) | ' "$r"; done)"
echo "|---|---|$(for r in $RATES; do printf -- '---|'; done)"
for name in before after; do
    grep -q "	$name	" "$TSV" || continue
    closed=$(awk -F'\t' -v n="$name" '$2 == n && $3 == "closed" {print $4}' "$TSV" | median)
    row="| $name | $closed |"
    for rate in $RATES; do
        open=$(awk -F'\t' -v n="$name" -v r="$rate" '$2 == n && $3 == r {print $4}' "$TSV" | median)
        ratio=$(awk -F'\t' -v n="$name" -v r="$rate" '$2 == n && $3 == r {print $5}' "$TSV" | median)
        row="$row $open (× $ratio) |"
    done
    echo "$row"
done
echo
echo "rounds (round, load, rate, p50 µs, × closed):"
cat "$TSV"
rm -f "$TSV"
