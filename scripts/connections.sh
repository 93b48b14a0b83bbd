#!/usr/bin/env bash
# How many concurrent connections this machine holds, past one process's open-file limit.
#
#   scripts/connections.sh [TOTAL] [SERVERS] [LOADERS]      (default 50000 4 3)
#
# One process holds at most ~19.9k sockets here (hard RLIMIT_NOFILE 20000), so TOTAL is reached
# with SERVERS `echoloop serve --reuse-port` processes sharing one port (the kernel spreads
# connections among them) and LOADERS `echoloop load --hold` processes side by side, each spreading
# its connections over 127.0.0.1-127.0.0.8 (one source address has ~28k ephemeral ports).
# Loopback only; stops by itself. Prints per-process counts and the server memory per connection.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-50000}; servers=${2:-4}; loaders=${3:-3}
hold_secs=20
cargo build --release --quiet
bin=target/release/echoloop
pids=(); outs=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -f "${outs[@]}"; }
trap cleanup EXIT

port=0
for i in $(seq "$servers"); do
    out=$(mktemp); outs+=("$out")
    "$bin" serve -l "127.0.0.1:$port" --reuse-port --max-connections 19900 --idle-timeout 0 \
        >"$out" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
    port=$(sed -n 's/^listening tcp 127.0.0.1:\([0-9]*\)\( .*\)\{0,1\}$/\1/p' "$out")
done
server_pids=("${pids[@]}")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A rss_before
for p in "${server_pids[@]}"; do rss_before[$p]=$(rss "$p"); done

per_loader=$(( (total + loaders - 1) / loaders ))
load_outs=()
for i in $(seq "$loaders"); do
    out=$(mktemp); outs+=("$out"); load_outs+=("$out")
    "$bin" load "127.0.0.1:$port" --hold -c "$per_loader" -d "$hold_secs" --threads 1 \
        --source-addrs 127.0.0.1-127.0.0.8 --connect-rate 20000 --json >"$out" 2>/dev/null &
    pids+=($!)
done

# Sample while the connections are held: every server's descriptor count and RSS.
sleep $(( hold_secs / 2 + 2 ))
held=0; growth=0
echo "server processes (port $port):"
for p in "${server_pids[@]}"; do
    n=$(( $(ls "/proc/$p/fd" | wc -l) - 8 ))
    r=$(rss "$p")
    held=$(( held + n )); growth=$(( growth + r - ${rss_before[$p]} ))
    echo "  pid $p: ~$n connections, RSS ${rss_before[$p]} -> $r KiB"
done
sockstat=$(grep '^TCP:' /proc/net/sockstat)
for p in "${pids[@]:${#server_pids[@]}}"; do wait "$p" || true; done
up=0
for out in "${load_outs[@]}"; do
    u=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r.get('connections_up', r['connections_ok']))" "$out")
    up=$(( up + u ))
done
echo "load processes: $loaders x $per_loader asked, $up up at the end"
echo "connections held by the servers: ~$held (most in one process: $(( held / servers )) avg)"
echo "server RSS growth: $growth KiB in all, $(( growth * 1024 / (held > 0 ? held : 1) )) bytes per connection"
echo "kernel: $sockstat (mem in pages)"
