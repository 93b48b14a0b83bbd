#!/usr/bin/env bash
# User-space instructions per echoed message over TLS, counted by callgrind, for echoloop's
# `tls:` listener and the tokio-rustls peer (bench/peers/tokio_rustls_echo): repeatable on a busy
# machine, so it is the before/after measure of a change on the TLS path (scripts/instructions.sh
# is the same for plain TCP). Loopback only; every process started here is stopped by its PID.
#
#   scripts/instructions-tls.sh [--connections N] [--size BYTES] [--rounds R] [--no-build]
#
# For each server, alternating, --rounds times (default 3): the server runs under
# `valgrind --tool=callgrind`, driven by bench/peers/tls_driver (one thread, natively) twice:
# once with messages for 4 s, once with only the handshakes and one message per connection
# (`--hold`). Ir/msg = (Ir of the first - Ir of the second) / the first's messages: what the
# handshakes and start-up cost is not spread over the messages. Prints one line per run and the
# median per server.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=50
SIZE=64
ROUNDS=3
BUILD=1
usage() {
    echo "usage: scripts/instructions-tls.sh [--connections N] [--size BYTES] [--rounds R] [--no-build]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) CONNECTIONS="${2:-}"; shift ;;
        --size) SIZE="${2:-}"; shift ;;
        --rounds) ROUNDS="${2:-}"; shift ;;
        --no-build) BUILD=0 ;;
        *) usage ;;
    esac
    shift
done
for n in "$CONNECTIONS" "$SIZE" "$ROUNDS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage
done
command -v valgrind > /dev/null || { echo "scripts/instructions-tls.sh: needs valgrind" >&2; exit 1; }

PEERS=target/peers
if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet
    bench/peers/build.sh "$PEERS" tls > /dev/null
fi
WORK=$(mktemp -d)
SERVER_PID=
HOLD_PID=
cleanup() {
    [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2> /dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2> /dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

CERT=tests/certs/server.pem
KEY=tests/certs/server.key
server_command() { # NAME
    case "$1" in
        echoloop-tls) echo "target/release/echoloop serve -l tls:127.0.0.1:0 --tls-cert $CERT --tls-key $KEY --accept-rate 0" ;;
        tokio-rustls) echo "$PEERS/tokio_rustls_echo 0 $CERT $KEY" ;;
    esac
}

# Runs server NAME under callgrind, drives it in MODE (load or hold); prints "Ir msgs".
measure() { # NAME MODE
    local name=$1 mode=$2 out="$WORK/$1.$2"
    # shellcheck disable=SC2046
    valgrind --tool=callgrind --callgrind-out-file="$out.cg" $(server_command "$name") \
        > "$out.log" 2>&1 &
    SERVER_PID=$!
    local port=
    for _ in $(seq 100); do
        port=$(grep -m 1 -o 'listening tls [^ ]*' "$out.log" 2> /dev/null | awk '{print $3}') || true
        [ -n "$port" ] && break
        sleep 0.2
    done
    [ -n "$port" ] || { echo "$name did not start" >&2; cat "$out.log" >&2; exit 1; }
    local driver=("$PEERS/tls_driver" "$port" -c "$CONNECTIONS" -s "$SIZE" -p 1 --ca tests/certs/ca.pem)
    if [ "$mode" = load ]; then
        "${driver[@]}" -d 4 > "$out.json"
    else
        "${driver[@]}" --hold > "$out.json" &
        HOLD_PID=$!
        for _ in $(seq 100); do [ -s "$out.json" ] && break; sleep 0.2; done
        kill "$HOLD_PID"; wait "$HOLD_PID" 2> /dev/null || true
        HOLD_PID=
    fi
    kill -TERM "$SERVER_PID"; wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=
    local ir msgs=0
    ir=$(callgrind_annotate "$out.cg" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    if [ "$mode" = load ]; then
        msgs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['msgs'])" "$out.json")
    fi
    echo "$ir $msgs"
}

declare -A RESULTS
for round in $(seq "$ROUNDS"); do
    for name in echoloop-tls tokio-rustls; do
        read -r ir_load msgs < <(measure "$name" load)
        read -r ir_hold _ < <(measure "$name" hold)
        per=$(( (ir_load - ir_hold) / msgs ))
        echo "round $round $name: $msgs messages, $per Ir/msg"
        RESULTS[$name]+="$per "
    done
done
for name in echoloop-tls tokio-rustls; do
    median=$(tr ' ' '\n' <<< "${RESULTS[$name]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "median $name: $median Ir/msg (${CONNECTIONS}x${SIZE}x1)"
done
