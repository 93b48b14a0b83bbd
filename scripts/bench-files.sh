#!/usr/bin/env bash
# bench-files.sh: what `echoloop serve -p files` costs, over loopback, on the local disk, each
# figure beside a baseline measured in the same run:
#
#   1. a PUT of a 1 KiB file (with its digest; fsync and publish included) into a folder of 10
#      files and into one of 20,000: time per PUT, and the ratio (goal: within 1.5x);
#   2. another client's LIST round trip (p50, p99, max) while a 1 GiB upload completes: from its
#      last byte sent to its DONE, the window in which the server fsyncs (goal: p99 < 20 ms);
#   3. `echoloop put` of a file (client hashing included) against `dd conv=fsync` of the same file
#      to the same disk, and `echoloop get` against `cat FILE > /dev/null` (goal: >= 0.8x).
#
#   scripts/bench-files.sh [BIG_MIB] [PUTS]      (defaults: 1024 and 300)
#
# Bounded: a fixed amount of data and requests, then it stops by itself and cleans up. Needs
# python3 (the measuring clients below) and about 3 x BIG_MIB of free space under ${TMPDIR:-/var/tmp}.
set -euo pipefail
cd "$(dirname "$0")/.."
big_mib=${1:-1024}
puts=${2:-300}

cargo build --release --quiet
bin=$PWD/target/release/echoloop
work=$(mktemp -d "${TMPDIR:-/var/tmp}/echoloop-bench-files.XXXXXX")
server=""
stop_server() {
    if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    server=""
}
shm=""
cleanup() { stop_server; rm -rf "$work" ${shm:+"$shm"}; }
trap cleanup EXIT

# start_server DIR: serves DIR; sets $server and $addr.
start_server() {
    rm -f "$work/listening"
    "$bin" serve -p files --dir "$1" -l 127.0.0.1:0 --max-file-bytes $((8 << 30)) \
        --max-files 1000000 > "$work/listening" 2>> "$work/server.log" &
    server=$!
    for _ in $(seq 400); do [[ -s "$work/listening" ]] && break; sleep 0.05; done
    addr=$(awk '/^listening tcp/ {print $3; exit}' "$work/listening")
}

cat > "$work/measure.py" <<'EOF'
import hashlib, socket, statistics, sys, threading, time

def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("rb")

def line(reader):
    got = reader.readline()
    assert got.endswith(b"\n"), got
    return got.decode().rstrip("\n")

def puts(addr, count, prefix):
    """Milliseconds per PUT of 1 KiB (its own name each time), after 20 unmeasured ones."""
    s, r = connect(addr)
    body = bytes(range(256)) * 4
    digest = hashlib.sha256(body).hexdigest()
    times = []
    for i in range(count + 20):
        start = time.perf_counter()
        s.sendall(b"PUT %sput-%d 1024 %s\n" % (prefix.encode(), i, digest.encode()) + body)
        assert line(r) == "OK 0"
        assert line(r).startswith("DONE 1024 ")
        if i >= 20:
            times.append(time.perf_counter() - start)
    print("%.3f" % (1000 * statistics.median(times)))

def list_during_upload(addr, path, size):
    """LIST round trips from another connection while the upload's last bytes and fsync run."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    up, up_r = connect(addr)
    up.sendall(b"PUT big.bin %d %s\n" % (size, digest.hexdigest().encode()))
    assert line(up_r) == "OK 0"
    window = {}
    def upload():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                up.sendall(chunk)
        window["sent"] = time.perf_counter()
        reply = line(up_r)
        window["done"] = time.perf_counter()
        assert reply.startswith("DONE "), reply
    lister, lister_r = connect(addr)
    samples = []
    thread = threading.Thread(target=upload)
    thread.start()
    while thread.is_alive():
        start = time.perf_counter()
        lister.sendall(b"LIST\n")
        while line(lister_r) != "END":
            pass
        end = time.perf_counter()
        samples.append((start, end - start))
        time.sleep(0.002)
    thread.join()
    inside = sorted(d for (t, d) in samples if window["sent"] <= t + d and t <= window["done"])
    if not inside:
        inside = [0.0]
    p = lambda q: 1000 * inside[min(len(inside) - 1, int(q * len(inside)))]
    print("%d %.1f %.1f %.1f %.0f" % (len(inside), p(0.5), p(0.99), 1000 * inside[-1],
                                      1000 * (window["done"] - window["sent"])))

def upload(addr, path, name, digest):
    """MiB/s of a PUT whose digest is known already: the server's side of an upload alone."""
    import os
    size = os.path.getsize(path)
    s, r = connect(addr)
    start = time.perf_counter()
    s.sendall(b"PUT %s %d %s\n" % (name.encode(), size, digest.encode()))
    assert line(r) == "OK 0"
    with open(path, "rb") as f:
        assert s.sendfile(f) == size
    assert line(r).startswith("DONE "), "no DONE"
    print("%.0f" % (size / (1 << 20) / (time.perf_counter() - start)))

def download(addr, name):
    """MiB/s of a GET read and dropped: the server's side of a download alone."""
    s, r = connect(addr)
    start = time.perf_counter()
    s.sendall(b"GET %s\n" % name.encode())
    size = int(line(r).split()[1])
    left = size
    buf = bytearray(1 << 20)
    while left > 0:
        n = r.readinto(memoryview(buf)[: min(left, len(buf))])
        assert n > 0, "closed early"
        left -= n
    print("%.0f" % (size / (1 << 20) / (time.perf_counter() - start)))

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "puts":
        puts(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif what == "upload":
        upload(*sys.argv[2:6])
    elif what == "download":
        download(sys.argv[2], sys.argv[3])
    else:
        list_during_upload(sys.argv[2], sys.argv[3], int(sys.argv[4]))
EOF

now() { date +%s.%N; }
ratio() { echo "$1 / $2" | bc -l; }

# ---- 1. PUT cost against the folder's size --------------------------------------------------
# On the disk each PUT waits for two fsyncs, whose time depends on everything else the disk is
# doing; on tmpfs (/dev/shm) fsync is free, so what remains is the server's own work per PUT.
# Each folder is measured twice, alternately, and the lower median is kept.
declare -A put_ms
for where in shm disk; do
    case $where in
        shm) shm=$(mktemp -d /dev/shm/echoloop-bench-files.XXXXXX); base=$shm ;;
        disk) base=$work/put-cost ;;
    esac
    for files in 10 20000; do
        mkdir -p "$base/folder-$files"
        python3 - "$base/folder-$files" "$files" <<'PY'
import os, sys
for i in range(int(sys.argv[2])):
    with open(os.path.join(sys.argv[1], "old-%d" % i), "wb") as f:
        f.write(b"x" * 100)
PY
    done
    sync
    for round in 1 2; do
        for files in 10 20000; do
            start_server "$base/folder-$files"
            ms=$(python3 "$work/measure.py" puts "$addr" "$puts" "r$round-")
            stop_server
            key=$where-$files
            if [[ -z "${put_ms[$key]:-}" ]] || (( $(echo "$ms < ${put_ms[$key]}" | bc) )); then
                put_ms[$key]=$ms
            fi
        done
    done
    rm -rf "$base"
    printf 'PUT of 1 KiB on %s, median of %d: %.3f ms with 10 files, %.3f ms with 20000 files: %.2fx\n' \
        "$where" "$puts" "${put_ms[$where-10]}" "${put_ms[$where-20000]}" \
        "$(ratio "${put_ms[$where-20000]}" "${put_ms[$where-10]}")"
done

# ---- 2. another client's LIST while a big upload completes ----------------------------------
mkdir -p "$work/served" "$work/local"
head -c $((big_mib << 20)) /dev/urandom > "$work/local/big.bin"
for i in $(seq 20); do echo "file $i" > "$work/served/small-$i"; done
sync
start_server "$work/served"
read -r samples p50 p99 max fsync_ms < <(python3 "$work/measure.py" list "$addr" \
    "$work/local/big.bin" $((big_mib << 20)))
stop_server
printf 'LIST round trip while a %d MiB upload completes (last byte to DONE: %d ms, %d LISTs): p50 %s ms, p99 %s ms, max %s ms\n' \
    "$big_mib" "$fsync_ms" "$samples" "$p50" "$p99" "$max"
rm -f "$work/served/big.bin"

# ---- 3. throughput against dd and cat of the same file on the same disk ---------------------
sync
start=$(now)
dd if="$work/local/big.bin" of="$work/dd.bin" bs=1M conv=fsync status=none
dd_rate=$(echo "$big_mib / ($(now) - $start)" | bc -l)
rm -f "$work/dd.bin"
sync
start_server "$work/served"
start=$(now)
"$bin" put "$addr" "$work/local/big.bin" --name up.bin 2> /dev/null
put_rate=$(echo "$big_mib / ($(now) - $start)" | bc -l)
digest=$(sha256sum "$work/local/big.bin" | cut -d' ' -f1)
raw_up_rate=$(python3 "$work/measure.py" upload "$addr" "$work/local/big.bin" up2.bin "$digest")
printf 'upload of %d MiB: echoloop put %.0f MiB/s (its own sha256 pass first), a PUT alone %.0f MiB/s, dd conv=fsync %.0f MiB/s: %.2fx and %.2fx\n' \
    "$big_mib" "$put_rate" "$raw_up_rate" "$dd_rate" "$(ratio "$put_rate" "$dd_rate")" \
    "$(ratio "$raw_up_rate" "$dd_rate")"

cat "$work/served/up.bin" > /dev/null # both read from the page cache
start=$(now)
cat "$work/served/up.bin" > /dev/null
cat_rate=$(echo "$big_mib / ($(now) - $start)" | bc -l)
start=$(now)
(cd "$work/local" && "$bin" get "$addr" up.bin -o down.bin 2> /dev/null)
get_rate=$(echo "$big_mib / ($(now) - $start)" | bc -l)
raw_down_rate=$(python3 "$work/measure.py" download "$addr" up.bin)
printf 'download of %d MiB: echoloop get %.0f MiB/s (writes the file, then its sha256 pass), a GET read and dropped %.0f MiB/s, cat > /dev/null %.0f MiB/s: %.2fx and %.2fx\n' \
    "$big_mib" "$get_rate" "$raw_down_rate" "$cat_rate" "$(ratio "$get_rate" "$cat_rate")" \
    "$(ratio "$raw_down_rate" "$cat_rate")"
