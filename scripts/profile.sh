#!/usr/bin/env bash
# Where a server's time goes, per echoed message: system calls (perf's syscall tracepoints) and
# the split of CPU samples between the kernel and user space (perf record, cpu-clock: hardware
# counters are not available on this VM). For echoloop and the C reference server, side by side.
# Loopback only; every process started here is stopped by its PID; stops by itself.
#
#   scripts/profile.sh [--connections N] [--size BYTES] [--pipeline K] [--duration SECS] [--no-build]
#                      [--baseline BINARY]
#
# Defaults: 1000 connections, 64 bytes, pipeline 1, 3 s: the steady state of issue 7's
# "≤ 2.1 system calls per echoed message". Server pinned to CPU 0, `echoloop load --threads 1`
# to CPU 1. Prints a Markdown table (paste it into docs/BENCHMARKS.md with the command).
# --baseline BINARY also profiles another echoloop build (the before of a change), between the two.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=1000
SIZE=64
PIPELINE=1
DURATION=3
BUILD=1
BASELINE=
COMMAND="scripts/profile.sh $*"
usage() {
    echo "usage: scripts/profile.sh [--connections N] [--size BYTES] [--pipeline K] [--duration SECS] [--no-build] [--baseline BINARY]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) CONNECTIONS="${2:-}"; shift ;;
        --size) SIZE="${2:-}"; shift ;;
        --pipeline) PIPELINE="${2:-}"; shift ;;
        --duration) DURATION="${2:-}"; shift ;;
        --no-build) BUILD=0 ;;
        --baseline) BASELINE="${2:-}"; shift ;;
        *) usage ;;
    esac
    shift
done
for n in "$CONNECTIONS" "$SIZE" "$PIPELINE" "$DURATION"; do
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || usage
done
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "scripts/profile.sh: --baseline needs an echoloop executable" >&2; exit 2; }
command -v perf > /dev/null || { echo "scripts/profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/echoloop-profile.XXXXXX)
SERVER_PID=
PERF_PID=
cleanup() {
    for pid in $PERF_PID $SERVER_PID; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

[ "$BUILD" = 1 ] && cargo build --release
bench/peers/build.sh "$WORK" c # the C reference server (bench/peers/); exits 2 if it cannot
LOAD=target/release/echoloop
EVENTS=syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_sendto,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_accept4,syscalls:sys_enter_timerfd_settime

start_server() { # NAME
    case "$1" in
        c) taskset -c 0 "$WORK/c_epoll_echo" 0 > "$WORK/server.out" 2>&1 & ;;
        echoloop) taskset -c 0 target/release/echoloop serve -l 127.0.0.1:0 --max-connections 20000 \
                      > "$WORK/server.out" 2>&1 & ;;
        baseline) taskset -c 0 "$BASELINE" serve -l 127.0.0.1:0 --max-connections 20000 \
                      > "$WORK/server.out" 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 200); do grep -q '^listening tcp' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
    ADDR=$(awk '/^listening tcp/ {print $3; exit}' "$WORK/server.out")
    if [ -z "$ADDR" ]; then
        echo "scripts/profile.sh: $1 did not start: $(head -c 300 "$WORK/server.out")" >&2
        exit 1
    fi
}

stop() { # PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

load() {
    taskset -c 1 "$LOAD" load --json --threads 1 -c "$CONNECTIONS" -s "$SIZE" --pipeline "$PIPELINE" \
        -d "$DURATION" --warmup 0 "$ADDR" > "$WORK/load.json"
}

SERVERS=(echoloop ${BASELINE:+baseline} c)
for name in "${SERVERS[@]}"; do
    # 1. System calls, counted over the whole run (connects included: accept4, epoll_ctl ADDs).
    start_server "$name"
    perf stat -x, -e "$EVENTS" -p "$SERVER_PID" -o "$WORK/$name.stat" &
    PERF_PID=$!
    sleep 0.3
    before=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"); t0=$(date +%s.%N)
    load
    after=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"); t1=$(date +%s.%N)
    # Share of one core the server used during the run: near 100%, it had work waiting at every
    # epoll_wait; lower, it sometimes caught up with the load and slept (one more epoll_wait).
    awk -v b="$before" -v a="$after" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f\n", 100 * (a - b) / hz / (t1 - t0) }' > "$WORK/$name.cpu"
    kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=
    cp "$WORK/load.json" "$WORK/$name.stat.json"
    stop "$SERVER_PID"; SERVER_PID=
    # 2. Where the CPU time goes: kernel or user space (sampled at 2 kHz on the server).
    start_server "$name"
    perf record -q -e cpu-clock -F 2000 -p "$SERVER_PID" -o "$WORK/$name.data" > /dev/null 2>&1 &
    PERF_PID=$!
    sleep 0.3
    load
    kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=
    stop "$SERVER_PID"; SERVER_PID=
    perf report -i "$WORK/$name.data" --no-children --sort dso -g none --stdio 2>/dev/null \
        | awk '/%/ && !/^#/ {print $1, $2}' > "$WORK/$name.dso"
done

python3 - "$WORK" "$COMMAND" "$CONNECTIONS" "$SIZE" "$PIPELINE" "${SERVERS[@]}" <<'PY'
import datetime, json, sys
work, command, conns, size, pipeline, *servers = sys.argv[1:]
names = {"echoloop": "echoloop", "baseline": "echoloop, baseline build", "c": "C epoll reference"}
print(f"Measured {datetime.date.today()}: {conns} connections, {size}-byte echo, pipeline {pipeline}, closed loop; "
      "server pinned to CPU 0, `echoloop load --threads 1` to CPU 1. Command: "
      f"`{command}`\n")
print("| server | messages | recv/read | send/write/writev | epoll_wait | epoll_ctl | accept4 | timerfd_settime | system calls per message | of which read + write | server CPU % | kernel % of CPU samples | user % (program + libc + vdso) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in servers:
    counts = {}
    for line in open(f"{work}/{name}.stat"):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2].split("sys_enter_")[-1]] = int(f[0])
    msgs = json.load(open(f"{work}/{name}.stat.json"))["messages_received"]
    if not msgs:
        sys.exit(f"scripts/profile.sh: no message was answered by {name}; nothing to divide by")
    reads = counts.get("recvfrom", 0) + counts.get("read", 0)
    writes = counts.get("sendto", 0) + counts.get("write", 0) + counts.get("writev", 0)
    steady = reads + writes + counts.get("epoll_wait", 0)
    total = steady + counts.get("epoll_ctl", 0) + counts.get("accept4", 0) + counts.get("timerfd_settime", 0)
    kernel = user = 0.0
    for line in open(f"{work}/{name}.dso"):
        share, dso = line.split()
        share = float(share.rstrip("%"))
        if "kernel" in dso:
            kernel += share
        else:
            user += share
    print(f"| {names[name]} | {msgs:,} | {reads:,} | {writes:,} | {counts.get('epoll_wait', 0):,} "
          f"| {counts.get('epoll_ctl', 0):,} | {counts.get('accept4', 0):,} | {counts.get('timerfd_settime', 0):,} | {total / msgs:.2f} "
          f"| {(reads + writes) / msgs:.2f} | {open(f'{work}/{name}.cpu').read().strip()} "
          f"| {kernel:.1f} | {user:.1f} |")
PY
