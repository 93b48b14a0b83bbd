#!/usr/bin/env bash
# Throughput matrix: `echoloop load` against `echoloop serve` and the reference servers in
# ../shared/peers (C epoll, tokio, mio, Python select), alternating servers run by run, the server
# pinned to CPU 0 and the load to CPU 1. Writes the table into docs/BENCHMARKS.md ("Throughput
# matrix") and a picture into docs/bench.svg. Loopback only; every server is stopped by its PID.
#
#   scripts/bench.sh [--quick] [--duration SECS] [--no-build]
#   scripts/bench.sh --models [--duration SECS] [--no-build]
#
# --models: instead of the matrix, echoloop's two serving models side by side ("Reactor vs
# threaded" in docs/BENCHMARKS.md): `serve` (one reactor thread) and `serve --model threaded` (a
# blocking thread per connection) at 10, 1000 and 5000 connections, 64-byte echo, pipeline 1,
# alternating which model runs first. Adds: peak `Threads:` of the server (/proc/PID/status,
# sampled every 0.1 s during the run) and the load average before each cell.
#
# --quick: connections 1, 50, 1000; size 64; pipeline 1 and 16. Full: connections 1, 50, 1000,
# 5000 × size 64, 4096 × pipeline 1, 16. --duration: measured seconds per cell (default 3).
# Figures: msgs/s and p99 from `echoloop load --json`; server CPU seconds per million messages from
# /proc/PID/stat (utime+stime) before/after the load run; server CPU % of its core over the run;
# peak RSS from VmHWM in /proc/PID/status. Ratios are to the C epoll server, measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
MODELS=0
DURATION=3
BUILD=1
COMMAND="scripts/bench.sh $*"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --models) MODELS=1 ;;
        --duration) DURATION="$2"; shift ;;
        --no-build) BUILD=0 ;;
        *) echo "usage: scripts/bench.sh [--quick | --models] [--duration SECS] [--no-build]" >&2; exit 2 ;;
    esac
    shift
done

PEERS=../shared/peers
WORK=$(mktemp -d /tmp/echoloop-bench.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

if [ "$BUILD" = 1 ]; then
    cargo build --release
    if [ "$MODELS" = 0 ]; then
        cargo build --release --manifest-path "$PEERS/tokio_echo/Cargo.toml" --target-dir /tmp/peers-target
        cargo build --release --manifest-path "$PEERS/mio_echo/Cargo.toml" --target-dir /tmp/peers-target
    fi
fi
cc -O2 -Wall -o "$WORK/c_epoll_echo" "$PEERS/c_epoll_echo.c"
LOAD=target/release/echoloop

# ----- --models: reactor vs threaded ----------------------------------------------------------
models_comparison() {
    local results="$WORK/models.tsv" round=0
    printf 'model\tconnections\tmsgs_per_sec\tp99_us\tcpu_pct\trss_kib\tthreads\tmismatches\tfailed\tloadavg\n' > "$results"
    for c in 10 1000 5000; do
        for i in 0 1; do
            local models=(reactor threaded)
            local model=${models[$(( (i + round) % 2 ))]}
            echo "cell c=$c: $model" >&2
            local loadavg
            loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
            rm -f "$WORK/server.out"
            taskset -c 0 target/release/echoloop serve -l 127.0.0.1:0 --max-connections 20000 \
                --model "$model" > "$WORK/server.out" 2> "$WORK/server.err" &
            SERVER_PID=$!
            for _ in $(seq 400); do grep -q '^listening tcp' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
            local addr
            addr=$(awk '/^listening tcp/ {print $3; exit}' "$WORK/server.out")
            # Peak thread count while the load runs.
            echo 0 > "$WORK/threads"
            ( peak=0; while kill -0 "$SERVER_PID" 2>/dev/null; do
                  n=$(awk '/^Threads:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
                  if [ "${n:-0}" -gt "$peak" ]; then peak=$n; echo "$peak" > "$WORK/threads"; fi
                  sleep 0.1
              done ) &
            local sampler=$!
            local before after start end
            before=$(cpu_ticks "$SERVER_PID")
            start=$(date +%s.%N)
            taskset -c 1 "$LOAD" load --json --threads 1 -c "$c" -s 64 --pipeline 1 \
                -d "$DURATION" --warmup 0.5 "$addr" > "$WORK/load.json" || true
            end=$(date +%s.%N)
            after=$(cpu_ticks "$SERVER_PID")
            local rss
            rss=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
            kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
            wait "$sampler" 2>/dev/null || true
            python3 - "$WORK/load.json" "$model" "$c" "$before" "$after" "$CLK_TCK" "$start" "$end" \
                "$rss" "$(cat "$WORK/threads")" "$loadavg" >> "$results" <<'PY'
import json, sys
path, model, c, before, after, tck, start, end, rss, threads, loadavg = sys.argv[1:]
r = json.load(open(path))
cpu = (int(after) - int(before)) / int(tck)
wall = float(end) - float(start)
print(f'{model}\t{c}\t{r["msgs_per_sec"]:.0f}\t{r["latency_us"]["p99"]:.0f}\t{100 * cpu / wall:.0f}'
      f'\t{rss}\t{threads}\t{r["mismatches"]}\t{r["connections_failed"]}\t{loadavg}')
PY
        done
        round=$((round + 1))
    done
    python3 - "$results" "$COMMAND" "$DURATION" > "$WORK/models.md" <<'PY'
import csv, datetime, subprocess, sys
path, command, duration = sys.argv[1:]
rows = list(csv.DictReader(open(path), delimiter="\t"))
base = {r["connections"]: r for r in rows if r["model"] == "reactor"}
def ratio(r, key):
    try:
        return f'{float(r[key]) / float(base[r["connections"]][key]):.2f}'
    except (KeyError, ValueError, ZeroDivisionError):
        return "n/a"
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
print("## Reactor vs threaded\n")
print(f"Measured {datetime.date.today()} on {cpu} (2 cores, shared), {duration} s per cell after 0.5 s warmup,")
print("server pinned to CPU 0, `echoloop load --threads 1` pinned to CPU 1, closed loop, 64-byte echo, pipeline 1.")
print(f"Command: `{command}`. Ratios are threaded / reactor in the same cell of the same run; the load")
print("average (1, 5, 15 min) was read just before each cell.\n")
print("| connections | model | msgs/s | × reactor | p99 µs | × reactor | server CPU % | peak RSS KiB | × reactor | peak threads | mismatches | failed conns | load average |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in sorted(rows, key=lambda r: (int(r["connections"]), r["model"])):
    print(f'| {r["connections"]} | {r["model"]} | {r["msgs_per_sec"]} | {ratio(r, "msgs_per_sec")} | {r["p99_us"]} | {ratio(r, "p99_us")} '
          f'| {r["cpu_pct"]} | {r["rss_kib"]} | {ratio(r, "rss_kib")} | {r["threads"]} | {r["mismatches"]} | {r["failed"]} | {r["loadavg"]} |')
PY
    python3 - docs/BENCHMARKS.md "$WORK/models.md" <<'PY'
import re, sys
doc_path, table_path = sys.argv[1:]
doc = open(doc_path).read()
table = open(table_path).read().rstrip() + "\n"
pattern = re.compile(r"## Reactor vs threaded\n.*?(?=\n## |\Z)", re.S)
if pattern.search(doc):
    doc = pattern.sub(lambda _: table, doc, count=1)
else:
    doc = doc.rstrip() + "\n\n" + table
open(doc_path, "w").write(doc)
PY
    cat "$WORK/models.md"
    echo "wrote docs/BENCHMARKS.md (Reactor vs threaded)" >&2
}

server_command() {
    case "$1" in
        c) echo "$WORK/c_epoll_echo 0" ;;
        echoloop) echo "target/release/echoloop serve -l 127.0.0.1:0 --max-connections 20000" ;;
        tokio) echo "/tmp/peers-target/release/tokio_echo 0" ;;
        mio) echo "/tmp/peers-target/release/mio_echo 0" ;;
        python) echo "python3 -u $PEERS/py_select_echo.py 0" ;;
    esac
}

if [ "$QUICK" = 1 ]; then
    CONNECTIONS="1 50 1000"; SIZES="64"; PIPELINES="1 16"
else
    CONNECTIONS="1 50 1000 5000"; SIZES="64 4096"; PIPELINES="1 16"
fi
SERVERS=(c echoloop tokio mio python)
CLK_TCK=$(getconf CLK_TCK)
RESULTS="$WORK/results.tsv"
printf 'server\tconnections\tsize\tpipeline\tmsgs_per_sec\tp99_us\tcpu_s_per_m\tcpu_pct\trss_kib\tmismatches\tfailed\n' > "$RESULTS"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

if [ "$MODELS" = 1 ]; then
    models_comparison
    exit 0
fi

run_cell() { # server connections size pipeline
    local name=$1 c=$2 s=$3 p=$4
    if [ "$name" = python ] && [ "$c" -gt 1000 ]; then
        # select() cannot watch descriptors past FD_SETSIZE (1024).
        printf '%s\t%s\t%s\t%s\tn/a\tn/a\tn/a\tn/a\tn/a\tn/a\tn/a\n' "$name" "$c" "$s" "$p" >> "$RESULTS"
        return
    fi
    # shellcheck disable=SC2046
    rm -f "$WORK/server.out"
    taskset -c 0 $(server_command "$name") > "$WORK/server.out" 2> "$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 400); do grep -q '^listening tcp' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
    local addr
    addr=$(awk '/^listening tcp/ {print $3; exit}' "$WORK/server.out")
    if [ -z "$addr" ]; then
        echo "$name did not start within 20 s: $(head -c 300 "$WORK/server.err")" >&2
        kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
        printf '%s\t%s\t%s\t%s\tn/a\tn/a\tn/a\tn/a\tn/a\tn/a\tn/a\n' "$name" "$c" "$s" "$p" >> "$RESULTS"
        return
    fi
    local before after start end
    before=$(cpu_ticks "$SERVER_PID")
    start=$(date +%s.%N)
    taskset -c 1 "$LOAD" load --json --threads 1 -c "$c" -s "$s" --pipeline "$p" \
        -d "$DURATION" --warmup 0.5 "$addr" > "$WORK/load.json" || true
    end=$(date +%s.%N)
    after=$(cpu_ticks "$SERVER_PID")
    local rss
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
    python3 - "$WORK/load.json" "$name" "$c" "$s" "$p" "$before" "$after" "$CLK_TCK" "$start" "$end" "$rss" >> "$RESULTS" <<'PY'
import json, sys
path, name, c, s, p, before, after, tck, start, end, rss = sys.argv[1:]
r = json.load(open(path))
cpu = (int(after) - int(before)) / int(tck)
wall = float(end) - float(start)
# Every message the server answered in the run (warmup and drain included) is about
# msgs/s × (warmup + duration); the measured window alone is messages_received.
total = r["msgs_per_sec"] * (r["config"]["warmup_secs"] + r["duration_secs"])
per_m = cpu / (total / 1e6) if total else float("nan")
print(f'{name}\t{c}\t{s}\t{p}\t{r["msgs_per_sec"]:.0f}\t{r["latency_us"]["p99"]:.0f}\t{per_m:.2f}'
      f'\t{100 * cpu / wall:.0f}\t{rss}\t{r["mismatches"]}\t{r["connections_failed"]}')
PY
}

round=0
for c in $CONNECTIONS; do
    for s in $SIZES; do
        for p in $PIPELINES; do
            # Alternate the order of servers from cell to cell, so no server always runs first.
            for i in "${!SERVERS[@]}"; do
                name=${SERVERS[$(( (i + round) % ${#SERVERS[@]} ))]}
                echo "cell c=$c s=$s p=$p: $name" >&2
                run_cell "$name" "$c" "$s" "$p"
            done
            round=$((round + 1))
        done
    done
done

python3 - "$RESULTS" "$COMMAND" "$DURATION" > "$WORK/table.md" <<'PY'
import csv, datetime, subprocess, sys
path, command, duration = sys.argv[1:]
rows = list(csv.DictReader(open(path), delimiter="\t"))
base = {(r["connections"], r["size"], r["pipeline"]): r for r in rows if r["server"] == "c"}
def ratio(r, key):
    b = base.get((r["connections"], r["size"], r["pipeline"]))
    try:
        return f'{float(r[key]) / float(b[key]):.2f}'
    except (TypeError, ValueError, ZeroDivisionError):
        return "n/a"
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                     capture_output=True, text=True).stdout.strip()
print("## Throughput matrix\n")
print(f"Measured {datetime.date.today()} on {cpu} (2 cores, shared), {duration} s per cell after 0.5 s warmup,")
print("server pinned to CPU 0, `echoloop load --threads 1` pinned to CPU 1, closed loop, echo, raw framing.")
print(f"Command: `{command}`. Ratios are to the C epoll server (`c`) in the same cell of the same run.\n")
print("| connections | size | pipeline | server | msgs/s | × C | p99 µs | server CPU s / M msgs | × C | server CPU % | peak RSS KiB | mismatches | failed conns |")
print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f'| {r["connections"]} | {r["size"]} | {r["pipeline"]} | {r["server"]} | {r["msgs_per_sec"]} | {ratio(r, "msgs_per_sec")} '
          f'| {r["p99_us"]} | {r["cpu_s_per_m"]} | {ratio(r, "cpu_s_per_m")} | {r["cpu_pct"]} | {r["rss_kib"]} | {r["mismatches"]} | {r["failed"]} |')
PY

# Replace the "Throughput matrix" section of docs/BENCHMARKS.md (up to the next "## ").
touch docs/BENCHMARKS.md
python3 - docs/BENCHMARKS.md "$WORK/table.md" <<'PY'
import re, sys
doc_path, table_path = sys.argv[1:]
doc = open(doc_path).read()
table = open(table_path).read().rstrip() + "\n"
pattern = re.compile(r"## Throughput matrix\n.*?(?=\n## |\Z)", re.S)
if pattern.search(doc):
    doc = pattern.sub(lambda _: table, doc, count=1)
else:
    doc = (doc.rstrip() + "\n\n" if doc.strip() else "# Benchmarks\n\n") + table
open(doc_path, "w").write(doc)
PY

# The picture: throughput and p99 against connections (size 64, pipeline 1), one line per server.
if ! command -v gnuplot > /dev/null; then
    apt-get install -y gnuplot-nox > /dev/null 2>&1 || { apt-get update > /dev/null && apt-get install -y gnuplot-nox > /dev/null; }
fi
for name in "${SERVERS[@]}"; do
    awk -F'\t' -v n="$name" '$1 == n && $3 == 64 && $4 == 1 && $5 != "n/a" {print $2, $5, $6}' "$RESULTS" > "$WORK/$name.dat"
done
gnuplot <<GP
set terminal svg size 900,420 dynamic font "sans,11"
set output "docs/bench.svg"
set multiplot layout 1,2 title "echoloop load, closed loop, 64-byte echo, pipeline 1 ($(date +%F))"
set logscale x
set xlabel "connections"
set key top left
set ylabel "msgs/s"
plot for [n in "${SERVERS[*]}"] "$WORK/".n.".dat" using 1:2 with linespoints title n
set ylabel "p99 latency (µs)"
set logscale y
plot for [n in "${SERVERS[*]}"] "$WORK/".n.".dat" using 1:3 with linespoints title n
unset multiplot
GP
cat "$WORK/table.md"
echo "wrote docs/BENCHMARKS.md (Throughput matrix) and docs/bench.svg" >&2
