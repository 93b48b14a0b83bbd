#!/usr/bin/env bash
# UDP benchmark: `echoloop serve -u` against a plain C UDP echo (recvfrom/sendto) and a batched C
# UDP echo (recvmmsg/sendmmsg), all driven by the same batched `echoloop load --udp`, alternated
# round by round, in one run. Loopback only; every server is started here and stopped by its
# PID; the whole run takes about two and a half minutes with the defaults.
#
#   scripts/bench-udp.sh [--rounds N] [--duration SECS] [--before BIN] [--no-build]
#
# Servers: echoloop as built (default --udp-rcvbuf 4M), echoloop with the kernel's default receive
# buffer (net.core.rmem_default, as the C peers have it), the two C peers.
# --before BIN adds another echoloop binary as a fifth server (the "before" of a change: build
# the old commit into /tmp and name its binary here). The C peers come from bench/peers/
# (bench/peers/build.sh OUT udp, which exits 2 naming what is missing).
#
# Load: 64 connected UDP sockets, 16 datagrams of 64 bytes in flight on each (1,024 in all),
# `echoloop load --threads 1`. The server is pinned to CPU 0 and the driver to CPU 1 (taskset):
# on a 2-core machine the driver is as busy as the server, and unpinned they would trade places.
#
# Per round and server:
# - datagrams/s and loss: from `echoloop load --json` (its measured window, after --warmup 0.5 s).
# - server CPU s per million datagrams: utime+stime of the server (/proc/PID/stat) over a steady
#   window inside the measured one, over the datagrams/s.
# Then one short round per server (not timed with the others) for system calls per datagram:
# `perf stat -e raw_syscalls:sys_enter` on the server for 1 s in the middle of a run, over the
# datagrams answered in that second (datagrams/s of that run). Skipped (shown as -) without perf.
# And one cross-check: the neutral C driver (bench/peers/udp_driver.c, sendmmsg/recvmmsg) against
# echoloop and the batched C peer, to show the echoloop driver is not what limits the figures.
#
# The table gives medians over the rounds and, for datagrams/s, the ratio to each C peer paired
# round by round (each round's figure over that peer's in the same round, then the median).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=5
DURATION=3
BEFORE=
BUILD=1
COMMAND="scripts/bench-udp.sh $*"
usage() {
    echo "usage: scripts/bench-udp.sh [--rounds N] [--duration SECS] [--before BIN] [--no-build]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2 ;;
        --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
        --before) [ $# -ge 2 ] || usage; BEFORE=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) usage ;;
    esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || usage
[[ $DURATION =~ ^[2-9]$|^[1-9][0-9]+$ ]] || { echo "scripts/bench-udp.sh: --duration is whole seconds, at least 2" >&2; exit 2; }
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "scripts/bench-udp.sh: --before $BEFORE is not an executable" >&2; exit 2; }
command -v taskset > /dev/null || { echo "scripts/bench-udp.sh: taskset not found (apt-get install util-linux)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "scripts/bench-udp.sh: python3 not found" >&2; exit 2; }

if [ "$BUILD" = 1 ]; then
    cargo build --quiet --release
fi
ECHOLOOP=$PWD/target/release/echoloop
[ -x "$ECHOLOOP" ] || { echo "scripts/bench-udp.sh: $ECHOLOOP missing (drop --no-build)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/bench-udp.XXXXXX)
bench/peers/build.sh "$WORK" udp

SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2> /dev/null || true; fi
}
trap cleanup EXIT

SERVERS="echoloop echoloop_small c_udp_echo c_udp_mmsg_echo"
[ -z "$BEFORE" ] || SERVERS="$SERVERS echoloop_before"
TICKS=$(getconf CLK_TCK)

# Starts server $1 pinned to CPU 0; sets SERVER_PID and PORT.
start_server() {
    local out=$WORK/$1.out
    : > "$out"
    case "$1" in
        echoloop) taskset -c 0 "$ECHOLOOP" serve -l 127.0.0.1:0 -u 127.0.0.1:0 > "$out" 2> "$WORK/$1.err" & ;;
        # The C peers keep the kernel's default receive buffer: echoloop with the same one
        # tells what batching does apart from what --udp-rcvbuf's 4 MiB does.
        echoloop_small) taskset -c 0 "$ECHOLOOP" serve -l 127.0.0.1:0 -u 127.0.0.1:0 --udp-rcvbuf "$(cat /proc/sys/net/core/rmem_default)" > "$out" 2> "$WORK/$1.err" & ;;
        echoloop_before) taskset -c 0 "$BEFORE" serve -l 127.0.0.1:0 -u 127.0.0.1:0 > "$out" 2> "$WORK/$1.err" & ;;
        *) taskset -c 0 "$WORK/$1" 0 > "$out" 2> "$WORK/$1.err" & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        PORT=$(grep -o 'udp 127.0.0.1:[0-9]*' "$out" | head -1 | cut -d: -f2 || true)
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    echo "scripts/bench-udp.sh: $1 did not say where it listens" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=
}

# utime+stime of $SERVER_PID, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"
}

# The batched driver against 127.0.0.1:$PORT for $1 seconds, pinned to CPU 1; JSON to $2.
drive() {
    taskset -c 1 "$ECHOLOOP" load --udp "127.0.0.1:$PORT" -c 64 --pipeline 16 -s 64 \
        -d "$1" --warmup 0.5 --threads 1 --max-loss 100 --json > "$2" 2> /dev/null || true
}

ROWS=$WORK/rounds.tsv
printf 'round\tserver\tdgrams_per_s\tlost\tsent\tcpu_s_per_M\n' > "$ROWS"
set -- $SERVERS
COUNT=$#
for round in $(seq "$ROUNDS"); do
    # Rotate the order from round to round: no server always goes first.
    order=$(echo $SERVERS | tr ' ' '\n' | awk -v r="$round" -v n="$COUNT" '{ a[NR] = $0 } END { for (i = 0; i < n; i++) print a[(i + r) % n + 1] }')
    for server in $order; do
        start_server "$server"
        drive "$DURATION" "$WORK/load.json" &
        driver=$!
        # A steady window inside the measured one: from 1 s after the start to 0.3 s before the end.
        sleep 1
        t0=$(date +%s.%N); c0=$(cpu_ticks)
        sleep "$(python3 -c "print($DURATION - 0.8)")"
        t1=$(date +%s.%N); c1=$(cpu_ticks)
        wait "$driver"
        stop_server
        python3 - "$WORK/load.json" "$round" "$server" "$t0" "$t1" "$c0" "$c1" "$TICKS" >> "$ROWS" << 'EOF'
import json, sys
path, rnd, server, t0, t1, c0, c1, ticks = sys.argv[1:]
r = json.load(open(path))
rate = r["msgs_per_sec"]
cores = (float(c1) - float(c0)) / float(ticks) / (float(t1) - float(t0))
per_m = cores / rate * 1e6 if rate > 0 else float("nan")
print(f"{rnd}\t{server}\t{rate:.0f}\t{r['lost']}\t{r['messages_sent']}\t{per_m:.2f}")
EOF
        tail -1 "$ROWS" >&2
    done
done

# System calls per datagram: one short run per server, perf counting the server's calls for 1 s.
SYSCALLS=$WORK/syscalls.tsv
: > "$SYSCALLS"
if command -v perf > /dev/null && perf stat -e raw_syscalls:sys_enter -x, -- true > /dev/null 2>&1; then
    for server in $SERVERS; do
        start_server "$server"
        drive 3 "$WORK/sys.json" &
        driver=$!
        sleep 1.2
        calls=$(perf stat -e raw_syscalls:sys_enter -x, -p "$SERVER_PID" -- sleep 1 2>&1 | awk -F, '/raw_syscalls/ { print $1 }')
        wait "$driver"
        stop_server
        rate=$(python3 -c "import json; print(json.load(open('$WORK/sys.json'))['msgs_per_sec'])")
        printf '%s\t%s\t%s\n' "$server" "$calls" "$rate" >> "$SYSCALLS"
        echo "syscalls $server: $calls in 1 s at $rate datagrams/s" >&2
    done
fi

# Cross-check: the neutral C driver, same shape (64 sockets x 16 in flight, 64 bytes).
CROSS=$WORK/cross.tsv
: > "$CROSS"
for server in echoloop c_udp_mmsg_echo; do
    start_server "$server"
    line=$(taskset -c 1 "$WORK/udp_driver" "127.0.0.1:$PORT" -n 64 -w 16 -s 64 -d "$DURATION" --server-pid "$SERVER_PID" || true)
    stop_server
    printf '%s\t%s\n' "$server" "$line" >> "$CROSS"
done

python3 - "$ROWS" "$SYSCALLS" "$CROSS" "$COMMAND" "$ROUNDS" "$DURATION" << 'EOF'
import json, statistics, sys
rows_path, sys_path, cross_path, command, rounds, duration = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(rows_path)][1:]
by = {}
for rnd, server, rate, lost, sent, per_m in rows:
    by.setdefault(server, {})[int(rnd)] = (float(rate), int(lost), int(sent), float(per_m))
syscalls = {}
for line in open(sys_path):
    server, calls, rate = line.rstrip("\n").split("\t")
    if calls and float(rate) > 0:
        syscalls[server] = float(calls) / float(rate)
def median(xs):
    return statistics.median(xs) if xs else float("nan")
def ratio(server, peer):
    pairs = [by[server][r][0] / by[peer][r][0] for r in by[server] if r in by.get(peer, {}) and by[peer][r][0] > 0]
    return median(pairs)
names = {
    "echoloop": "echoloop (this build)",
    "echoloop_small": "echoloop, the kernel's default receive buffer",
    "echoloop_before": "echoloop (before: --before)",
    "c_udp_echo": "C recvfrom/sendto",
    "c_udp_mmsg_echo": "C recvmmsg/sendmmsg",
}
print(f"`{command}`: {rounds} rounds of {duration} s, alternated; 64 sockets x 16 in flight, 64 B;")
print("server on CPU 0, `echoloop load --udp --threads 1` on CPU 1 (taskset). Medians of the rounds.\n")
print("| server | datagrams/s | vs C plain | vs C mmsg | server CPU s / M datagrams | system calls / datagram | loss |")
print("|---|---:|---:|---:|---:|---:|---:|")
for server in ["echoloop", "echoloop_small", "echoloop_before", "c_udp_echo", "c_udp_mmsg_echo"]:
    if server not in by:
        continue
    runs = list(by[server].values())
    rate = median([r[0] for r in runs])
    per_m = median([r[3] for r in runs])
    lost = sum(r[1] for r in runs) / max(1, sum(r[2] for r in runs))
    calls = syscalls.get(server)
    calls = f"{calls:.3f}" if calls is not None else "-"
    print(f"| {names[server]} | {rate:,.0f} | {ratio(server, 'c_udp_echo'):.2f}x | {ratio(server, 'c_udp_mmsg_echo'):.2f}x | {per_m:.2f} | {calls} | {100 * lost:.2f}% |")
print("\nRounds (datagrams/s):")
for server, runs in by.items():
    print(f"- {server}: " + ", ".join(f"{runs[r][0]:,.0f}" for r in sorted(runs)))
print("\nCross-check with bench/peers/udp_driver.c (same shape):")
for line in open(cross_path):
    server, text = line.rstrip("\n").split("\t", 1)
    try:
        j = json.loads(text)
        print(f"- {server}: {j['msgs_per_s']:,} datagrams/s, lost {j['lost']}, corrupt {j['corrupt']}, "
              f"server CPU {j.get('server_cpu_s_per_M', float('nan')):.2f} s/M, foreign cores {j.get('foreign_cores', float('nan')):.2f}")
    except (ValueError, KeyError):
        print(f"- {server}: no result ({text[:80]})")
EOF
