#!/usr/bin/env bash
# bench-files.sh: MiB/s of one upload and of 20 concurrent uploads to `echoloop serve -p files` on
# a local disk, over loopback, and the server's peak RSS (VmHWM) after each: it must not grow with
# the file size. Bounded: a fixed amount of data, then it stops by itself and cleans up.
#
#   scripts/bench-files.sh [ONE_MIB] [EACH_MIB]     (defaults: 512 and 64)
#
# Times are wall clock for `echoloop put`, which includes the client's sha256 pass over its file
# before sending (the end-to-end figure a user sees).
set -euo pipefail
cd "$(dirname "$0")/.."
one_mib=${1:-512}
each_mib=${2:-64}
clients=20

cargo build --release --quiet
bin=$PWD/target/release/echoloop
work=$(mktemp -d "${TMPDIR:-/var/tmp}/echoloop-bench-files.XXXXXX")
server=""
cleanup() {
    if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/served" "$work/local"

head -c $((one_mib << 20)) /dev/urandom > "$work/local/one.bin"
head -c $((each_mib << 20)) /dev/urandom > "$work/local/each.bin"

"$bin" serve -p files --dir "$work/served" -l 127.0.0.1:0 --max-file-bytes $((4 << 30)) \
    > "$work/listening" 2> "$work/server.log" &
server=$!
for _ in $(seq 100); do [[ -s "$work/listening" ]] && break; sleep 0.05; done
addr=$(sed -n 's/^listening tcp //p' "$work/listening")
hwm() { awk '/VmHWM/ {print $2}' "/proc/$server/status"; }
rss_start=$(hwm)

now() { date +%s.%N; }
start=$(now)
"$bin" put "$addr" "$work/local/one.bin" 2> /dev/null
end=$(now)
one_rate=$(echo "$one_mib / ($end - $start)" | bc -l)
rss_one=$(hwm)

start=$(now)
pids=()
for i in $(seq $clients); do
    "$bin" put "$addr" "$work/local/each.bin" --name "each-$i.bin" 2> /dev/null &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
end=$(now)
many_rate=$(echo "$clients * $each_mib / ($end - $start)" | bc -l)
rss_many=$(hwm)

printf 'one upload of %d MiB: %.0f MiB/s\n' "$one_mib" "$one_rate"
printf '%d concurrent uploads of %d MiB: %.0f MiB/s in total\n' "$clients" "$each_mib" "$many_rate"
printf 'server VmHWM: %d KiB at start, %d KiB after the single upload, %d KiB after the %d\n' \
    "$rss_start" "$rss_one" "$rss_many" "$clients"
