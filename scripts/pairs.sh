#!/usr/bin/env bash
# Simultaneous pairs: echoloop and a reference server measured *at the same time*, so that the
# shared VM's drift (tens of percent over minutes, and bursts within seconds) falls on both alike.
# Loopback only; every process started here is stopped by its PID; the script stops by itself.
#
#   scripts/pairs.sh [--cells CxSxP,...] [--against c,tokio,echoloop,baseline] [--baseline BINARY]
#                    [--repeat N] [--duration SECS] [--no-build]
#
# bench.sh alternates servers, seconds apart, and pairs each run with the C server's run of the
# same round; the drift between two runs is still large (paired ratios of one cell range over
# 0.6-1.8 in 16 rounds). Here both servers run at once, pinned to CPU 0, each driven by its own
# `echoloop load --threads 1` (the same settings), both loads pinned to CPU 1; the steady window is
# the same wall-clock interval for both. Measured per pair:
# - CPU s / M msgs of each server over that window (utime+stime / messages answered), and their
#   ratio echoloop / other: the primary figure (below 1: echoloop spent less CPU per message).
# - msgs/s ratio echoloop / other. Where both servers are CPU-bound they share CPU 0 fairly, and
#   the one that needs less CPU per message answers more. Where they are not (one connection,
#   latency-bound), it shows how two servers share a core, not how fast either is alone: the
#   alternated runs of bench.sh are the throughput measure there.
# - `--against echoloop` pairs echoloop with itself: the method's own noise (ratios should be 1).
# - `--against baseline --baseline BINARY` pairs echoloop with another build of it, for the
#   before/after of a change: e.g. `git worktree add /tmp/base COMMIT` and
#   `cargo build --release --manifest-path /tmp/base/Cargo.toml --target-dir /tmp/base-target`,
#   then `--baseline /tmp/base-target/release/echoloop`. With `--against baseline` alone, the
#   result goes to its own section ("Before and after, side by side") and docs/bench-baseline.tsv.
# Defaults: the 16 cells of issue 7 (connections 1, 50, 1000, 5000 × 64 and 4096 bytes × pipeline
# 1 and 16), against c, tokio and echoloop, 3 rounds of 4 s. Written to docs/BENCHMARKS.md
# ("Simultaneous pairs") and every pair to docs/bench-pairs.tsv; other cells or servers go to
# "Simultaneous pairs, selected" and docs/bench-pairs-selected.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."

DEFAULT_CELLS=1x64x1,1x64x16,1x4096x1,1x4096x16,50x64x1,50x64x16,50x4096x1,50x4096x16,1000x64x1,1000x64x16,1000x4096x1,1000x4096x16,5000x64x1,5000x64x16,5000x4096x1,5000x4096x16
DEFAULT_AGAINST=c,tokio,echoloop
CELLS=$DEFAULT_CELLS
AGAINST=$DEFAULT_AGAINST
BASELINE=
REPEAT=3
DURATION=4
BUILD=1
COMMAND="scripts/pairs.sh $*"
usage() {
    echo "usage: scripts/pairs.sh [--cells CxSxP,...] [--against c,tokio,echoloop,baseline] [--baseline BINARY] [--repeat N] [--duration SECS] [--no-build]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --cells) CELLS="${2:-}"; shift ;;
        --against) AGAINST="${2:-}"; shift ;;
        --baseline) BASELINE="${2:-}"; shift ;;
        --repeat) REPEAT="${2:-}"; shift ;;
        --duration) DURATION="${2:-}"; shift ;;
        --no-build) BUILD=0 ;;
        *) usage ;;
    esac
    shift
done
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || usage
[[ "$CELLS" =~ ^[0-9]+x[0-9]+x[0-9]+(,[0-9]+x[0-9]+x[0-9]+)*$ ]] || usage
[[ "$AGAINST" =~ ^(c|tokio|echoloop|baseline)(,(c|tokio|echoloop|baseline))*$ ]] || usage
if [[ ",$AGAINST," == *,baseline,* ]] && [ ! -x "$BASELINE" ]; then
    echo "scripts/pairs.sh: --against baseline needs --baseline BINARY (an echoloop executable)" >&2
    exit 2
fi
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 2 ]] || usage

WORK=$(mktemp -d /tmp/echoloop-pairs.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

[ "$BUILD" = 1 ] && cargo build --release
# The reference servers (bench/peers/README.md); exits 2 naming what is missing.
bench/peers/build.sh "$WORK/peers" c tokio
PEERS=$WORK/peers
CLK_TCK=$(getconf CLK_TCK)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')

server_command() {
    case "$1" in
        c) echo "$PEERS/c_epoll_echo 0" ;;
        echoloop) echo "target/release/echoloop serve -l 127.0.0.1:0 --max-connections 20000" ;;
        tokio) echo "$PEERS/tokio_echo 0" ;;
        baseline) echo "$BASELINE serve -l 127.0.0.1:0 --max-connections 20000" ;;
    esac
}

# utime+stime of a process in clock ticks; "gone" if it has exited (that pair becomes n/a).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2> /dev/null || echo gone; }

# pair OTHER CONNS SIZE PIPELINE FIRST: one simultaneous run; prints echoloop's and OTHER's
# msgs/s, CPU s/M and mismatches, tab-separated (n/a if a side failed). FIRST (0 or 1) is the side
# started first, alternated from round to round: the first started measured about 1% worse in
# echoloop-with-itself pairs. (Called with its output redirected to a file, not in $(...): a
# subshell would keep PIDS from the cleanup trap.)
pair() {
    local other=$1 c=$2 s=$3 p=$4 first=$5 i sides order pids=() addrs=() loads=()
    sides=(echoloop "$other")
    order=("$first" "$((1 - first))")
    # Last pair's files must go first: a server's `>` truncates its file only once the child runs,
    # and a stale `listening` line read before that would name a port that is already closed.
    rm -f "$WORK"/load.* "$WORK"/server.*.out
    for i in "${order[@]}"; do
        # shellcheck disable=SC2046
        taskset -c 0 $(server_command "${sides[$i]}") > "$WORK/server.$i.out" 2> /dev/null &
        pids[i]=$!
        PIDS+=($!)
    done
    for i in 0 1; do
        for _ in $(seq 200); do grep -q '^listening tcp' "$WORK/server.$i.out" 2>/dev/null && break; sleep 0.05; done
        addrs+=("$(awk '/^listening tcp/ {print $3; exit}' "$WORK/server.$i.out")")
    done
    if [ -n "${addrs[0]}" ] && [ -n "${addrs[1]}" ]; then
        for i in "${order[@]}"; do
            taskset -c 1 target/release/echoloop load --json --threads 1 --warmup 0.5 -d "$DURATION" \
                -c "$c" -s "$s" --pipeline "$p" "${addrs[$i]}" > "$WORK/load.$i.json" 2> "$WORK/load.$i.err" &
            loads+=($!)
            PIDS+=($!)
        done
        # The steady window: from 1.2 s after start to about 0.5 s before the loads end.
        sleep 1.2
        local a=() b=() t0 t1
        for i in "${order[@]}"; do a[i]=$(ticks "${pids[$i]}"); done
        t0=$(date +%s.%N)
        sleep "$((DURATION - 1))"
        for i in "${order[@]}"; do b[i]=$(ticks "${pids[$i]}"); done
        t1=$(date +%s.%N)
        wait "${loads[@]}" || true
    fi
    kill "${pids[@]}" 2> /dev/null || true
    wait "${pids[@]}" 2> /dev/null || true
    PIDS=()
    python3 - "$WORK" "${a[0]:-gone}" "${b[0]:-gone}" "${a[1]:-gone}" "${b[1]:-gone}" "${t0:-0}" "${t1:-1}" "$CLK_TCK" <<'PY'
import json, sys
work, a0, b0, a1, b1, t0, t1, tck = sys.argv[1:]
wall = float(t1) - float(t0)
out = []
for i, (a, b) in enumerate(((a0, b0), (a1, b1))):
    try:
        r = json.load(open(f"{work}/load.{i}.json"))
        rate = r["msgs_per_sec"]
        cpu = (int(b) - int(a)) / int(tck) / wall
        out += [f"{rate:.0f}", f"{cpu / rate * 1e6:.2f}" if rate else "n/a", str(r["mismatches"])]
    except (OSError, ValueError, KeyError) as e:
        try:
            why = open(f"{work}/load.{i}.err").read().strip()[-300:]
        except OSError:
            why = "the server did not start"
        print(f"side {i} failed ({e}): {why}", file=sys.stderr)
        out += ["n/a"] * 3
print("\t".join(out))
PY
}

IFS=, read -ra cells <<< "$CELLS"
IFS=, read -ra others <<< "$AGAINST"
results="$WORK/pairs.tsv"
printf 'round\tconnections\tsize\tpipeline\tother\techoloop_msgs_per_sec\techoloop_cpu_s_per_m\techoloop_mismatches\tother_msgs_per_sec\tother_cpu_s_per_m\tother_mismatches\n' > "$results"
for round in $(seq "$REPEAT"); do
    for cell in "${cells[@]}"; do
        IFS=x read -r c s p <<< "$cell"
        for other in "${others[@]}"; do
            echo "round $round/$REPEAT c=$c s=$s p=$p: echoloop with $other" >&2
            pair "$other" "$c" "$s" "$p" "$((round % 2))" > "$WORK/row"
            printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$c" "$s" "$p" "$other" "$(cat "$WORK/row")" >> "$results"
        done
    done
done
# The full run has its own section; a before/after and a run of chosen cells or servers get
# theirs, so that neither overwrites the full table with a part of it.
if [ "$AGAINST" = baseline ]; then
    TITLE="Before and after, side by side"
    TSV=docs/bench-baseline.tsv
elif [ "$CELLS" = "$DEFAULT_CELLS" ] && [ "$AGAINST" = "$DEFAULT_AGAINST" ]; then
    TITLE="Simultaneous pairs"
    TSV=docs/bench-pairs.tsv
else
    TITLE="Simultaneous pairs, selected"
    TSV=docs/bench-pairs-selected.tsv
fi
cp "$results" "$TSV"

python3 - "$results" "$COMMAND" "$DURATION" "$REPEAT" "$CPU_MODEL" "$WORK/section.md" "$TITLE" "$TSV" "$BASELINE" <<'PY'
import csv, datetime, statistics, sys
sys.path.insert(0, "scripts")
from report import median, num
path, command, duration, repeat, cpu, out_path, title, tsv, baseline = sys.argv[1:]
rows = list(csv.DictReader(open(path), delimiter="\t"))
def ratio(r, name):
    try:
        return float(r["echoloop_" + name]) / float(r["other_" + name])
    except (ValueError, ZeroDivisionError):
        return None
has_self = any(r["other"] == "echoloop" for r in rows)
groups = {}
for r in rows:
    groups.setdefault((int(r["connections"]), int(r["size"]), int(r["pipeline"]), r["other"]), []).append(r)
def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"
lines = [f"## {title}\n",
         f"Measured {datetime.date.today()} on {cpu} (2 cores, a shared VM). Each pair: echoloop and "
         "the other server running at the same time, both pinned to CPU 0, each driven by its own "
         "`echoloop load --threads 1` with the settings of the cell, both loads pinned to CPU 1; "
         f"{duration} s per run after 0.5 s warmup, {repeat} rounds. CPU s / M msgs is each server's "
         "utime+stime over the same steady window divided by the messages it answered. Ratios are "
         "echoloop / other, per pair, then the median over the rounds (min–max in brackets): CPU below "
         "1 means echoloop spent less CPU per message. msgs/s compares throughput only where both "
         "servers are CPU-bound (they then share CPU 0 fairly); with one connection they are "
         "latency-bound and it shows how two servers share a core, not how fast either is alone. The "
         "machine's drift falls on both servers alike, so these ratios are far steadier than "
         "alternated runs. Which server starts first alternates from round to round"
         + ("; the `echoloop` rows pair "
         "echoloop with itself and show the method's own noise" if has_self else "")
         + (f"; the `baseline` rows pair it with another build, `{baseline}`" if baseline else "")
         + f". \"pairs\" counts the pairs in which both sides ran. Every pair: `{tsv}`.",
         f"\nCommand: `{command}`\n",
         "| connections | size | pipeline | against | pairs | CPU s/M × other | msgs/s × other | echoloop CPU s/M | other CPU s/M | mismatches |",
         "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
order = {"c": 0, "tokio": 1, "echoloop": 2, "baseline": 3}
def med(rs, name):
    value = median(num(r[name]) for r in rs)
    return "n/a" if value is None else f"{value:.2f}"
for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], order[k[3]])):
    rs = groups[key]
    mism = sum(int(r[f]) for r in rs for f in ("echoloop_mismatches", "other_mismatches") if r[f].isdigit())
    ran = sum(1 for r in rs if ratio(r, "cpu_s_per_m") is not None)
    lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {ran} | {summary(ratio(r, 'cpu_s_per_m') for r in rs)} "
                 f"| {summary(ratio(r, 'msgs_per_sec') for r in rs)} | {med(rs, 'echoloop_cpu_s_per_m')} "
                 f"| {med(rs, 'other_cpu_s_per_m')} | {mism} |")
open(out_path, "w").write("\n".join(lines) + "\n")
PY
python3 scripts/report.py replace-section docs/BENCHMARKS.md "$TITLE" "$WORK/section.md"
echo "wrote docs/BENCHMARKS.md ($TITLE), $TSV" >&2
