#!/usr/bin/env bash
# Soak: a bounded, loopback-only run of mixed clients against one echoloop server, ending in a
# verdict. Good clients must lose 0 bytes; RSS and descriptors must come back to where they were.
#
#   scripts/soak.sh [SECONDS]        (default 120)
#
# Prints the verdict and exits non-zero if a good client lost or saw changed bytes, or if the
# server's descriptors did not return to their baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
cargo build --release --quiet
bin=target/release/echoloop
out=$(mktemp)
"$bin" serve -l 127.0.0.1:0 --framing line --queue-limit 262144 --idle-timeout 2 \
    --max-frame 65536 --stats-interval 30 >"$out" 2>/tmp/echoloop-soak.log &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening tcp 127.0.0.1:\([0-9]*\)\( .*\)\{0,1\}$/\1/p' "$out")

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }

# Baseline after one round trip, so the reactor is fully set up.
python3 -c "import socket; s=socket.create_connection(('127.0.0.1',$port)); s.sendall(b'hi\n'); s.recv(10)"
sleep 0.5
rss_before=$(rss_kib); fds_before=$(fds)
verdict=$(python3 scripts/soak.py 127.0.0.1 "$port" "$seconds")
# Let idle timeouts and lingering closes finish, then look again.
for _ in $(seq 100); do [ "$(fds)" -le "$fds_before" ] && break; sleep 0.1; done
rss_after=$(rss_kib); fds_after=$(fds); hwm=$(hwm_kib)
kill -TERM "$pid"; wait "$pid"; status=$?
trap - EXIT; rm -f "$out"

python3 - "$verdict" "$rss_before" "$rss_after" "$hwm" "$fds_before" "$fds_after" "$status" "$seconds" <<'PY'
import json, sys
v = json.loads(sys.argv[1])
rss_before, rss_after, hwm, fds_before, fds_after, status = map(int, sys.argv[2:8])
v.update(seconds=float(sys.argv[8]), server_rss_kib_before=rss_before, server_rss_kib_after=rss_after,
         server_rss_kib_peak=hwm, server_fds_before=fds_before, server_fds_after=fds_after,
         server_exit_status=status)
ok = v["bytes_lost_or_changed"] == 0 and fds_after <= fds_before and status == 0
v["verdict"] = "PASS" if ok else "FAIL"
print(json.dumps(v, indent=2, sort_keys=True))
sys.exit(0 if ok else 1)
PY
