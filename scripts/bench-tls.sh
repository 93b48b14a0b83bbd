#!/usr/bin/env bash
# TLS benchmark: `echoloop serve -l tls:...` against the tokio-rustls echo peer, each beside its
# plain-TCP self (echoloop, the tokio echo peer), all driven by the same neutral TLS/TCP driver
# (bench/peers/tls_driver), alternated round by round, in one run. Loopback only; every server
# and driver is started here and stopped by its PID; about six minutes with the defaults.
#
#   scripts/bench-tls.sh [--cells CxSxP,...] [--servers LIST] [--rounds N] [--duration SECS]
#                        [--idle K] [--no-build]
#
# Servers (--servers, comma-separated; default all four):
#   echoloop-tls   target/release/echoloop serve -l tls:127.0.0.1:0 with tests/certs/server.pem
#   echoloop       the same binary, plain TCP
#   tokio-rustls   bench/peers/tokio_rustls_echo (a task per connection, current_thread runtime)
#   tokio          bench/peers/tokio_echo, plain TCP, for reference
# All use rustls with ring; the driver offers TLS 1.3 and 1.2 (1.3 is chosen), no session
# resumption (every handshake is a full one), and trusts tests/certs/ca.pem.
#
# Cells (--cells): connections × bytes per message × messages in flight per connection, the
# cells scripts/pairs.sh measures for TCP; default 1x64x1,50x64x1,50x4096x16,1000x64x1.
#
# Per round, cell and server (the order of the servers rotated each round): the server starts
# pinned to CPU 0, the driver (one thread) pinned to CPU 1 (taskset) opens the connections and
# handshakes them all (timed apart), then keeps the messages in flight for --warmup 0.5 s and
# --duration SECS, checking every byte. The driver reports msgs/s and the server's utime+stime
# (/proc/PID/stat) over exactly its measured window: CPU µs per message. Also: the server's CPU
# per handshake, and the cores the rest of the machine kept busy meanwhile ("foreign").
#
# Then per server, once per round: bytes per idle connection: the server's VmRSS with K (--idle,
# default 2000) handshaken idle connections (each has echoed one 64-byte message, so both sides
# are past the handshake), minus its VmRSS before them, over K.
#
# Then one short run per server at 50x64x1 for system calls per message: `perf stat` on the
# server for 1 s in the middle of a 3 s run, by call, over the messages of that second (skipped
# without perf).
#
# The table: medians over the rounds; ratios paired round by round (each round's figure over
# the other server's in the same round, then the median). Written to docs/BENCHMARKS.md ("TLS")
# and every run to docs/bench-tls.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_CELLS=1x64x1,50x64x1,50x4096x16,1000x64x1
ALL_SERVERS=echoloop-tls,echoloop,tokio-rustls,tokio
CELLS=$DEFAULT_CELLS
SERVERS=$ALL_SERVERS
ROUNDS=3
DURATION=4
IDLE=2000
BUILD=1
COMMAND="scripts/bench-tls.sh $*"
usage() {
    echo "usage: scripts/bench-tls.sh [--cells CxSxP,...] [--servers echoloop-tls,echoloop,tokio-rustls,tokio] [--rounds N] [--duration SECS] [--idle K] [--no-build]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --cells) [ $# -ge 2 ] || usage; CELLS=$2; shift 2 ;;
        --servers) [ $# -ge 2 ] || usage; SERVERS=$2; shift 2 ;;
        --rounds) [ $# -ge 2 ] || usage; ROUNDS=$2; shift 2 ;;
        --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
        --idle) [ $# -ge 2 ] || usage; IDLE=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) usage ;;
    esac
done
[[ $CELLS =~ ^[0-9]+x[0-9]+x[0-9]+(,[0-9]+x[0-9]+x[0-9]+)*$ ]] || usage
[[ $SERVERS =~ ^(echoloop-tls|echoloop|tokio-rustls|tokio)(,(echoloop-tls|echoloop|tokio-rustls|tokio))*$ ]] || usage
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || usage
[[ $DURATION =~ ^[2-9]$|^[1-9][0-9]+$ ]] || { echo "scripts/bench-tls.sh: --duration is whole seconds, at least 2" >&2; exit 2; }
[[ $IDLE =~ ^[0-9]+$ ]] || usage
command -v taskset > /dev/null || { echo "scripts/bench-tls.sh: taskset not found (apt-get install util-linux)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "scripts/bench-tls.sh: python3 not found" >&2; exit 2; }

if [ "$BUILD" = 1 ]; then
    cargo build --quiet --release
fi
ECHOLOOP=$PWD/target/release/echoloop
[ -x "$ECHOLOOP" ] || { echo "scripts/bench-tls.sh: $ECHOLOOP missing (drop --no-build)" >&2; exit 2; }
CERT=$PWD/tests/certs/server.pem
KEY=$PWD/tests/certs/server.key
CA=$PWD/tests/certs/ca.pem
WORK=$(mktemp -d /tmp/bench-tls.XXXXXX)
# The peers and the driver (bench/peers/README.md); exits 2 naming what is missing.
bench/peers/build.sh "$WORK" tls tokio
# K idle connections need K descriptors on each side.
ulimit -n "$(ulimit -Hn)"

SERVER_PID=
DRIVER_PID=
cleanup() {
    for pid in $DRIVER_PID $SERVER_PID; do kill "$pid" 2> /dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts server $1 pinned to CPU 0; sets SERVER_PID and ADDR (the `listening` line's address).
start_server() {
    local out=$WORK/server.out
    : > "$out"
    case "$1" in
        echoloop-tls) taskset -c 0 "$ECHOLOOP" serve -l tls:127.0.0.1:0 --tls-cert "$CERT" --tls-key "$KEY" --max-connections 20000 > "$out" 2> "$WORK/server.err" & ;;
        echoloop) taskset -c 0 "$ECHOLOOP" serve -l 127.0.0.1:0 --max-connections 20000 > "$out" 2> "$WORK/server.err" & ;;
        tokio-rustls) taskset -c 0 "$WORK/tokio_rustls_echo" 0 "$CERT" "$KEY" > "$out" 2> "$WORK/server.err" & ;;
        tokio) taskset -c 0 "$WORK/tokio_echo" 0 > "$out" 2> "$WORK/server.err" & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 200); do
        ADDR=$(awk '/^listening (tcp|tls)/ { print $3; exit }' "$out")
        [ -n "$ADDR" ] && return 0
        sleep 0.05
    done
    echo "scripts/bench-tls.sh: $1 did not say where it listens: $(tail -3 "$WORK/server.err")" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2> /dev/null || true
    wait "$SERVER_PID" 2> /dev/null || true
    SERVER_PID=
}

# The driver's arguments for server $1: plain TCP for the plain servers.
driver_mode() {
    case "$1" in
        echoloop-tls | tokio-rustls) echo "--ca $CA" ;;
        *) echo --plain ;;
    esac
}

rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }

RUNS=$WORK/runs.jsonl
IDLES=$WORK/idle.tsv
SYSCALLS=$WORK/syscalls.tsv
: > "$RUNS"
: > "$IDLES"
: > "$SYSCALLS"
IFS=, read -ra cells <<< "$CELLS"
IFS=, read -ra servers <<< "$SERVERS"
count=${#servers[@]}
for round in $(seq "$ROUNDS"); do
    # Rotate the order from round to round: no server always goes first.
    order=()
    for i in $(seq 0 $((count - 1))); do order+=("${servers[$(((i + round) % count))]}"); done
    for cell in "${cells[@]}"; do
        IFS=x read -r c s p <<< "$cell"
        for server in "${order[@]}"; do
            start_server "$server"
            # shellcheck disable=SC2046
            line=$(taskset -c 1 "$WORK/tls_driver" "$ADDR" $(driver_mode "$server") -c "$c" -s "$s" -p "$p" \
                -d "$DURATION" --warmup 0.5 --server-pid "$SERVER_PID" 2> "$WORK/driver.err" || true)
            stop_server
            [ -n "$line" ] || line='{"failed":true}'
            printf '{"round":%s,"cell":"%s","server":"%s","run":%s}\n' "$round" "$cell" "$server" "$line" >> "$RUNS"
            echo "round $round/$ROUNDS $cell $server: $line" >&2
            [ -s "$WORK/driver.err" ] && sed 's/^/  /' "$WORK/driver.err" >&2
        done
    done
    if [ "$IDLE" -gt 0 ]; then
        for server in "${order[@]}"; do
            start_server "$server"
            sleep 0.3
            before=$(rss_kib)
            # shellcheck disable=SC2046
            taskset -c 1 "$WORK/tls_driver" "$ADDR" $(driver_mode "$server") -c "$IDLE" --hold \
                > "$WORK/hold.out" 2> "$WORK/hold.err" &
            DRIVER_PID=$!
            for _ in $(seq 1200); do [ -s "$WORK/hold.out" ] && break; sleep 0.1; done
            sleep 0.5
            after=$(rss_kib)
            held=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("holding", 0))' "$WORK/hold.out" 2> /dev/null || echo 0)
            kill "$DRIVER_PID" 2> /dev/null || true
            wait "$DRIVER_PID" 2> /dev/null || true
            DRIVER_PID=
            stop_server
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "$before" "$after" "$held" >> "$IDLES"
            echo "round $round idle $server: $held held, VmRSS $before -> $after KiB" >&2
        done
    fi
done

# System calls by call, 1 s of a 3 s run at 50x64x1 per server.
EVENTS=raw_syscalls:sys_enter
for call in read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_ctl; do
    EVENTS=$EVENTS,syscalls:sys_enter_$call
done
if command -v perf > /dev/null && perf stat -e "$EVENTS" -x, -- true > /dev/null 2>&1; then
    for server in "${servers[@]}"; do
        start_server "$server"
        # shellcheck disable=SC2046
        taskset -c 1 "$WORK/tls_driver" "$ADDR" $(driver_mode "$server") -c 50 -s 64 -p 1 -d 3 --warmup 0.5 \
            --server-pid "$SERVER_PID" > "$WORK/sys.json" 2> /dev/null &
        DRIVER_PID=$!
        sleep 1.5
        perf stat -e "$EVENTS" -x, -p "$SERVER_PID" -- sleep 1 2> "$WORK/perf.out" > /dev/null || true
        wait "$DRIVER_PID" || true
        DRIVER_PID=
        stop_server
        rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["msgs_per_s"])' "$WORK/sys.json" 2> /dev/null || echo 0)
        calls=$(awk -F, '/sys_enter/ { sub(/.*:/, "", $3); sub(/^sys_enter_?/, "", $3); printf "%s%s=%s", sep, ($3 == "" ? "all" : $3), $1; sep = " " }' "$WORK/perf.out")
        printf '%s\t%s\t%s\n' "$server" "$rate" "$calls" >> "$SYSCALLS"
        echo "syscalls $server at $rate msgs/s: $calls" >&2
    done
fi

python3 - "$RUNS" "$IDLES" "$SYSCALLS" "$COMMAND" "$ROUNDS" "$DURATION" "$IDLE" "$WORK/section.md" "$WORK/runs.tsv" << 'EOF'
import datetime, json, statistics, sys
runs_path, idle_path, sys_path, command, rounds, duration, idle, out_path, tsv_path = sys.argv[1:]
runs = [json.loads(line) for line in open(runs_path)]
order = ["echoloop-tls", "tokio-rustls", "echoloop", "tokio"]
cells = list(dict.fromkeys(r["cell"] for r in runs))
by = {}  # (cell, server) -> {round: run}
for r in runs:
    by.setdefault((r["cell"], r["server"]), {})[r["round"]] = r["run"]

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def get(run, key):
    value = run.get(key)
    return value if isinstance(value, (int, float)) and value == value else None

def paired(cell, a, b, key):
    """Each round's a/b, then the median and the range."""
    ra, rb = by.get((cell, a), {}), by.get((cell, b), {})
    ratios = [get(ra[n], key) / get(rb[n], key) for n in ra
              if n in rb and get(ra[n], key) and get(rb[n], key)]
    if not ratios:
        return "n/a"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"

def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)

def handshakes(cell, rs):
    """Handshakes/s and server CPU per handshake: only where there are enough handshakes for
    /proc's 10 ms clock ticks to measure them (1000 connections), else a dash."""
    if int(cell.split("x")[0]) < 1000:
        return "– | –"
    return (f"{fmt(med(get(r, 'handshakes_per_s') for r in rs), ',.0f')} "
            f"| {fmt(med(get(r, 'server_cpu_us_per_handshake') for r in rs), ',.0f')}")

foreign = [get(r["run"], "foreign_cores") for r in runs]
foreign = [f for f in foreign if f is not None]
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
lines = [
    "## TLS\n",
    f"Command: `{command.strip()}`\n",
    f"Measured {datetime.date.today()} on {cpu} (2 cores, a shared VM); the cores kept busy by "
    f"other processes during the measured windows (\"foreign\", from /proc/stat): median "
    f"{fmt(med(foreign), '.2f')}, {fmt(min(foreign, default=None), '.2f')}–{fmt(max(foreign, default=None), '.2f')}. "
    "Server on CPU 0, the driver (`bench/peers/tls_driver`, one thread, tokio-rustls, every byte "
    "checked) on CPU 1; TLS 1.3, TLS13_AES_256_GCM_SHA384, ECDSA P-256 certificate, full "
    f"handshakes only. Rounds: {rounds}, of {duration} s each after 0.5 s warmup, the servers' order "
    "rotated each round; medians. CPU µs/msg: the server's utime+stime over the driver's "
    "measured window, over the messages answered. Ratios are paired by round (median, min–max). "
    "Every run: `docs/bench-tls.tsv`.\n",
    "| cell (conns×bytes×in flight) | server | msgs/s | CPU µs/msg | handshakes/s | CPU µs/handshake | errors | mismatches |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]
for cell in cells:
    for server in order:
        rs = by.get((cell, server))
        if not rs:
            continue
        rs = list(rs.values())
        errors = sum(r.get("errors", 0) + r.get("handshake_failures", 0) for r in rs)
        errors += sum(1 for r in rs if r.get("failed"))
        mism = sum(r.get("mismatches", 0) for r in rs)
        lines.append(
            f"| {cell} | {server} | {fmt(med(get(r, 'msgs_per_s') for r in rs), ',.0f')} "
            f"| {fmt(med(get(r, 'server_cpu_us_per_msg') for r in rs), '.2f')} "
            f"| {handshakes(cell, rs)} | {errors} | {mism} |")
lines += ["", "Ratios (paired by round; msgs/s above 1 and CPU per message below 1 favour the first):\n",
          "| cell | msgs/s echoloop-TLS / tokio-rustls | CPU/msg echoloop-TLS / tokio-rustls | msgs/s echoloop TLS / plain | CPU/msg echoloop TLS / plain | msgs/s tokio-rustls / tokio |",
          "|---|---:|---:|---:|---:|---:|"]
for cell in cells:
    lines.append(
        f"| {cell} | {paired(cell, 'echoloop-tls', 'tokio-rustls', 'msgs_per_s')} "
        f"| {paired(cell, 'echoloop-tls', 'tokio-rustls', 'server_cpu_us_per_msg')} "
        f"| {paired(cell, 'echoloop-tls', 'echoloop', 'msgs_per_s')} "
        f"| {paired(cell, 'echoloop-tls', 'echoloop', 'server_cpu_us_per_msg')} "
        f"| {paired(cell, 'tokio-rustls', 'tokio', 'msgs_per_s')} |")
idles = [l.rstrip("\n").split("\t") for l in open(idle_path)]
if idles:
    lines += ["", f"Memory per idle connection: the server's VmRSS with {idle} handshaken idle "
              "connections (each echoed one 64-byte message first) minus its VmRSS before them, "
              "over the connections held; median of the rounds:\n",
              "| server | VmRSS before (KiB) | VmRSS with them (KiB) | held | bytes per idle connection |",
              "|---|---:|---:|---:|---:|"]
    for server in order:
        rows = [r for r in idles if r[1] == server and r[4].isdigit() and int(r[4]) > 0]
        if not rows:
            continue
        per = med((int(r[3]) - int(r[2])) * 1024 / int(r[4]) for r in rows)
        lines.append(f"| {server} | {fmt(med(int(r[2]) for r in rows), ',.0f')} "
                     f"| {fmt(med(int(r[3]) for r in rows), ',.0f')} | {rows[0][4]} | {fmt(per, ',.0f')} |")
calls = [l.rstrip("\n").split("\t") for l in open(sys_path)]
if calls:
    lines += ["", "System calls per message at 50×64×1 (`perf stat` on the server, 1 s in the "
              "middle of a 3 s run, over that run's msgs/s):\n",
              "| server | msgs/s | all | by call |", "|---|---:|---:|---|"]
    for server, rate, text in calls:
        counts = dict(item.split("=") for item in text.split())
        rate = float(rate) or float("nan")
        per = {name: int(n) / rate for name, n in counts.items() if n.isdigit()}
        detail = ", ".join(f"{name} {v:.2f}" for name, v in per.items() if name != "all" and v >= 0.005)
        lines.append(f"| {server} | {rate:,.0f} | {fmt(per.get('all'), '.2f')} | {detail} |")
open(out_path, "w").write("\n".join(lines) + "\n")
keys = ["msgs_per_s", "server_cpu_us_per_msg", "handshakes_per_s", "server_cpu_us_per_handshake",
        "handshake_p50_ms", "errors", "mismatches", "foreign_cores", "version", "suite"]
with open(tsv_path, "w") as tsv:
    tsv.write("round\tcell\tserver\t" + "\t".join(keys) + "\n")
    for r in runs:
        tsv.write(f"{r['round']}\t{r['cell']}\t{r['server']}\t"
                  + "\t".join(str(r["run"].get(k, "n/a")) for k in keys) + "\n")
EOF
cp "$WORK/runs.tsv" docs/bench-tls.tsv
python3 scripts/report.py replace-section docs/BENCHMARKS.md "TLS" "$WORK/section.md"
cat "$WORK/section.md"
echo "wrote docs/BENCHMARKS.md (TLS), docs/bench-tls.tsv" >&2
