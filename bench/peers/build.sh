#!/usr/bin/env bash
# Builds echoloop's reference peers (the servers in this folder) for the benchmark scripts.
#
#   bench/peers/build.sh OUT_DIR PEER...        PEER: c, udp, tokio, mio, tls, python
#
# Leaves OUT_DIR/c_epoll_echo, OUT_DIR/tokio_echo, OUT_DIR/mio_echo as asked (udp: the UDP peers
# OUT_DIR/c_udp_echo and OUT_DIR/c_udp_mmsg_echo and the C driver OUT_DIR/udp_driver; tls: the
# TLS peer OUT_DIR/tokio_rustls_echo and the TLS driver OUT_DIR/tls_driver; python: nothing to
# build, python3 is checked). The Rust peers are projects of their own, built in release mode into
# target/peers/ (kept between runs, so a second build is a no-op). Something missing (a C
# compiler, cargo, python3): one line saying what and how to get it, exit 2.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: bench/peers/build.sh OUT_DIR PEER..." >&2; exit 2; }
OUT=$1
shift
mkdir -p "$OUT"

missing() { # WHAT HOW
    echo "bench/peers/build.sh: cannot build the $1 peer: $2" >&2
    exit 2
}

for peer in "$@"; do
    case "$peer" in
        c)
            CC=${CC:-cc}
            command -v "$CC" > /dev/null 2>&1 \
                || missing "C epoll" "no C compiler ($CC); install one (apt-get install gcc) or set CC"
            "$CC" -O2 -Wall -o "$OUT/c_epoll_echo" "$HERE/c_epoll_echo.c"
            ;;
        udp)
            CC=${CC:-cc}
            command -v "$CC" > /dev/null 2>&1 \
                || missing "C UDP" "no C compiler ($CC); install one (apt-get install gcc) or set CC"
            for program in c_udp_echo c_udp_mmsg_echo udp_driver; do
                "$CC" -O2 -Wall -pthread -o "$OUT/$program" "$HERE/$program.c"
            done
            ;;
        tokio | mio | tls)
            command -v cargo > /dev/null 2>&1 || missing "$peer" "cargo not found (https://rustup.rs)"
            programs=("${peer}_echo")
            [ "$peer" = tls ] && programs=(tokio_rustls_echo tls_driver)
            for program in "${programs[@]}"; do
                cargo build --quiet --release --manifest-path "$HERE/$program/Cargo.toml" \
                    --target-dir "$ROOT/target/peers" \
                    || missing "$program" "cargo build failed (its dependencies come from crates.io: offline?)"
                cp "$ROOT/target/peers/release/$program" "$OUT/$program"
            done
            ;;
        python)
            command -v python3 > /dev/null 2>&1 \
                || missing "Python select" "python3 not found (apt-get install python3)"
            ;;
        *) echo "bench/peers/build.sh: no peer named $peer (c, udp, tokio, mio, tls, python)" >&2; exit 2 ;;
    esac
done
