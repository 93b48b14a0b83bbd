#!/usr/bin/env bash
# The poll → epoll → threads cost curve (docs/GUIDE.md, "Why epoll"): the same echo server three
# ways, at 1, 10, 100, 1,000 and 10,000 connections, of which at most 10 are busy and the rest
# connected and idle.
#
#   scripts/cost-curve.sh [--connections "1 10 100 1000 10000"] [--busy 10] [--seconds S]
#                         [--plot FILE.svg] [--no-build]
#
# The three servers:
# - epoll:    the normal release build (mio on epoll), target/release/echoloop;
# - poll:     the same source built with RUSTFLAGS='--cfg mio_unsupported_force_poll_poll' (mio on
#             poll(2)), in its own target dir, target/poll/release/echoloop;
# - threaded: the normal build, `serve --model threaded` (a blocking thread per connection).
# The driver is the normal build: `echoloop load --hold` holds the idle connections (one process,
# one thread), then `echoloop load -c BUSY --threads 1` ping-pongs 64-byte messages on the busy
# ones (one in flight each). The server is pinned to CPU 0, both load processes (and perf) to
# CPU 1 (`taskset`): on this 2-core machine the driver is as busy as the server.
#
# Per cell, from the server's side, over a window of --seconds (default 1.5) while the busy load
# runs:
# - msgs/s:        bytes the server's sockets sent (`bytes_sent` of `ss -ti`, the kernel's count
#                  per socket: whatever the model, no cooperation from the server) / 64 / seconds;
# - CPU µs/msg:    utime+stime of all the server's threads (/proc/PID/stat) / messages;
# - syscalls/msg:  a second window of 1 s right after: `perf stat -e raw_syscalls:sys_enter`
#                  attached to the server (to the threaded server's 10 busiest threads, those of
#                  the busy connections: perf attached by PID does not follow threads started
#                  later, and attaching to 10,000 idle ones would take longer than the window) /
#                  messages in that window;
# - RSS B/conn:    (VmRSS with every connection up - VmRSS before the first) / connections.
# Prints a TSV table (model, connections, busy, msgs_per_s, cpu_us_per_msg, syscalls_per_msg,
# rss_bytes_per_conn) and, with --plot, draws CPU µs per message against connections into an SVG
# (examples/cost_curve.rs). One run per cell: 1–2 minutes in all here. Loopback only; every
# process started here is stopped by its PID; the script stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS="1 10 100 1000 10000"
BUSY=10
SECONDS_PER_WINDOW=1.5
PLOT=
BUILD=1
SIZE=64
usage() {
    echo 'usage: scripts/cost-curve.sh [--connections "1 10 100 1000 10000"] [--busy N] [--seconds S] [--plot FILE.svg] [--no-build]' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) CONNECTIONS="${2:-}"; shift ;;
        --busy) BUSY="${2:-}"; shift ;;
        --seconds) SECONDS_PER_WINDOW="${2:-}"; shift ;;
        --plot) PLOT="${2:-}"; shift ;;
        --no-build) BUILD=0 ;;
        *) usage ;;
    esac
    shift
done
for n in $CONNECTIONS "$BUSY"; do
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || usage
done
[[ "$SECONDS_PER_WINDOW" =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage
command -v perf > /dev/null || { echo "scripts/cost-curve.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }
command -v taskset > /dev/null || { echo "scripts/cost-curve.sh: needs taskset (util-linux)" >&2; exit 2; }
# 10,000 connections: one server holds them all, one load process holds the idle ones.
ulimit -n 20000 2> /dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$BUILD" = 1 ]; then
    cargo build --release --quiet
    RUSTFLAGS='--cfg mio_unsupported_force_poll_poll' cargo build --release --quiet --target-dir target/poll
    [ -z "$PLOT" ] || cargo build --release --quiet --example cost_curve
fi
EPOLL_BIN=target/release/echoloop
POLL_BIN=target/poll/release/echoloop
for bin in "$EPOLL_BIN" "$POLL_BIN"; do
    [ -x "$bin" ] || { echo "scripts/cost-curve.sh: $bin missing (run without --no-build)" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/echoloop-cost-curve.XXXXXX)
SERVER_PID=
HOLD_PID=
LOAD_PID=
PERF_PID=
stop() { [ -z "$1" ] || { kill "$1" 2> /dev/null || true; wait "$1" 2> /dev/null || true; }; }
cleanup() {
    stop "$PERF_PID"; stop "$LOAD_PID"; stop "$HOLD_PID"; stop "$SERVER_PID"
    rm -rf "$WORK"
}
trap cleanup EXIT

ticks_per_s=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# bytes_sent of every established connection on the server's port PORT, added up.
bytes_sent() {
    ss -Htin state established "( sport = :$1 )" | awk '{
        for (i = 1; i <= NF; i++) if ($i ~ /^bytes_sent:/) { split($i, kv, ":"); sum += kv[2] }
    } END { print sum + 0 }'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
open_fds() { ls "/proc/$1/fd" | wc -l; }
now() { date +%s.%N; }

# wait_for SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds; fails after SECONDS.
wait_for() {
    local give_up
    give_up=$(( $(date +%s) + $1 )); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$give_up" ] || return 1
        sleep 0.05
    done
}
# connections_at_least PORT N: N connections to PORT are established.
connections_at_least() {
    [ "$(ss -Htn state established "( sport = :$1 )" | wc -l)" -ge "$2" ]
}
# fds_settled PID: its descriptor count is the same 0.3 s later.
fds_settled() {
    local before
    before=$(open_fds "$1"); sleep 0.3
    [ "$(open_fds "$1")" -eq "$before" ]
}

# The threads perf counts: all of a reactor's; of a thread-per-connection server, the BUSY that
# were switched to most often (the busy connections': an idle one has slept since it started; CPU
# ticks do not tell them apart, a thread that runs for microseconds at a time is seldom charged).
perf_targets() {
    local pid=$1 tasks
    tasks=$(ls "/proc/$pid/task" | wc -l)
    if [ "$tasks" -le 64 ]; then
        echo "-p $pid"
        return
    fi
    local busiest
    busiest=$( (grep -H '^voluntary_ctxt_switches' /proc/"$pid"/task/*/status 2> /dev/null || true) \
        | awk '{split($1, path, "/"); print $2, path[5]}' | sort -rn \
        | awk -v n="$BUSY" 'NR <= n {print $2}' | paste -sd, -)
    echo "-t $busiest"
}

# cell MODEL CONNECTIONS: one measurement; prints one TSV row.
cell() {
    local model=$1 total=$2 bin=$EPOLL_BIN model_args=()
    case "$model" in
        poll) bin=$POLL_BIN ;;
        threaded) model_args=(--model threaded) ;;
    esac
    # The threaded server keeps two descriptors per connection (the socket and a clone to shut it
    # down with): under a 20,000-descriptor limit it holds at most ~9,980.
    if [ "$model" = threaded ] && [ $(( 2 * total + 40 )) -gt "$(ulimit -n)" ]; then
        total=$(( ($(ulimit -n) - 40) / 2 / 10 * 10 ))
        echo "threaded: $total connections, not $2: two descriptors each, limit $(ulimit -n)" >&2
    fi
    local busy=$(( total < BUSY ? total : BUSY ))
    local idle=$(( total - busy ))
    taskset -c 0 "$bin" serve -l 127.0.0.1:0 "${model_args[@]}" --idle-timeout 0 \
        --max-connections 20000 > "$WORK/listen" 2> "$WORK/server.err" &
    SERVER_PID=$!
    wait_for 10 grep -q '^listening tcp' "$WORK/listen" || { echo "server did not start" >&2; return 1; }
    local addr port
    addr=$(sed -n 's/^listening tcp //p' "$WORK/listen" | head -n 1)
    port=${addr##*:}
    local rss0
    rss0=$(rss_kib "$SERVER_PID")
    if [ "$idle" -gt 0 ]; then
        taskset -c 1 "$EPOLL_BIN" load "$addr" --hold -c "$idle" -d 120 --threads 1 \
            > /dev/null 2> "$WORK/hold.err" &
        HOLD_PID=$!
        # Up in the kernel, then taken in by the server (its descriptor count settles).
        wait_for 60 connections_at_least "$port" "$idle" \
            || { echo "$model $total: the idle connections did not all come up" >&2; return 1; }
        wait_for 60 fds_settled "$SERVER_PID" \
            || { echo "$model $total: the server did not settle" >&2; return 1; }
    fi
    # Longer than both windows need (listing 10,000 threads takes a while): stopped after them.
    taskset -c 1 "$EPOLL_BIN" load "$addr" -c "$busy" --threads 1 -s "$SIZE" -d 60 \
        --warmup 0 > /dev/null 2> "$WORK/load.err" &
    LOAD_PID=$!
    sleep 0.7 # connected, steady

    # Window 1: rate, CPU, memory.
    local t_a c_a r_a t_b c_b r_b rss
    t_a=$(now); c_a=$(cpu_ticks "$SERVER_PID"); r_a=$(bytes_sent "$port")
    sleep "$SECONDS_PER_WINDOW"
    t_b=$(now); c_b=$(cpu_ticks "$SERVER_PID"); r_b=$(bytes_sent "$port")
    rss=$(rss_kib "$SERVER_PID")

    # Window 2: system calls, perf attached (it slows the server: not used for the rate). perf
    # starts with its counters off and is switched on and off through a control FIFO, each
    # switch acknowledged, so that what it counts and what the sockets sent cover the same second.
    local r_c r_d targets
    targets=$(perf_targets "$SERVER_PID")
    rm -f "$WORK/ctl" "$WORK/ack"; mkfifo "$WORK/ctl" "$WORK/ack"
    # shellcheck disable=SC2086 # $targets is two words on purpose
    taskset -c 1 perf stat -x, -e raw_syscalls:sys_enter $targets -D -1 \
        --control "fifo:$WORK/ctl,$WORK/ack" -o "$WORK/perf.csv" 2> /dev/null &
    PERF_PID=$!
    exec 7> "$WORK/ctl" 8< "$WORK/ack"
    echo enable >&7; read -r -t 10 -u 8 _
    r_c=$(bytes_sent "$port")
    sleep 1
    r_d=$(bytes_sent "$port")
    echo disable >&7; read -r -t 10 -u 8 _
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    PERF_PID=
    exec 7>&- 8<&-
    local syscalls
    syscalls=$(awk -F, '/raw_syscalls:sys_enter/ {print $1}' "$WORK/perf.csv")

    kill -0 "$LOAD_PID" 2> /dev/null \
        || { echo "$model $total: the load ended early: $(tail -n 1 "$WORK/load.err")" >&2; return 1; }
    stop "$LOAD_PID"; LOAD_PID=
    stop "$HOLD_PID"; HOLD_PID=
    stop "$SERVER_PID"; SERVER_PID=

    awk -v m="$model" -v n="$total" -v busy="$busy" -v size="$SIZE" -v hz="$ticks_per_s" \
        -v ta="$t_a" -v tb="$t_b" -v ca="$c_a" -v cb="$c_b" -v ra="$r_a" -v rb="$r_b" \
        -v rc="$r_c" -v rd="$r_d" -v sc="${syscalls:-0}" -v rss="$rss" -v rss0="$rss0" 'BEGIN {
            msgs = (rb - ra) / size; msgs2 = (rd - rc) / size
            rate = msgs / (tb - ta)
            cpu = msgs > 0 ? (cb - ca) / hz * 1e6 / msgs : 0
            calls = msgs2 > 0 ? sc / msgs2 : 0
            per_conn = (rss - rss0) * 1024 / n
            printf "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.0f\n", m, n, busy, rate, cpu, calls, per_conn
        }'
}

TABLE="$WORK/cost-curve.tsv"
printf 'model\tconnections\tbusy\tmsgs_per_s\tcpu_us_per_msg\tsyscalls_per_msg\trss_bytes_per_conn\n' > "$TABLE"
echo "server on CPU 0, load and perf on CPU 1; $SIZE-byte echo, one message in flight per busy connection" >&2
for total in $CONNECTIONS; do
    for model in epoll poll threaded; do
        cell "$model" "$total" >> "$TABLE"
        tail -n 1 "$TABLE" >&2
    done
done
column -t -s $'\t' "$TABLE"
if [ -n "$PLOT" ]; then
    target/release/examples/cost_curve "$TABLE" "$PLOT"
    echo "plot: $PLOT" >&2
fi
