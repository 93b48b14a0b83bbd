#!/usr/bin/env bash
# Builds the container image of `Containerfile` and checks it: the `listening` lines, and one
# echo through a published port. Uses podman, else docker; where neither works (not installed,
# or docker without a running engine) it says so in a SKIPPED line and exits 0.
#
#   scripts/container-test.sh [--keep-image]
#
# The binary is built on the host, static: the musl target where `rustup target add` can add it,
# else glibc with `-C target-feature=+crt-static`. It is copied into a temporary build context
# with the Containerfile, so nothing but the binary goes into the image.
set -euo pipefail
cd "$(dirname "$0")/.."

KEEP_IMAGE=0
case "${1:-}" in
    --keep-image) KEEP_IMAGE=1 ;;
    "") ;;
    *) echo "usage: scripts/container-test.sh [--keep-image]" >&2; exit 2 ;;
esac

# A container engine that answers: podman runs without a daemon; docker needs its engine.
ENGINE=
for candidate in podman docker; do
    if command -v "$candidate" > /dev/null 2>&1; then
        if "$candidate" info > /dev/null 2>&1; then
            ENGINE=$candidate
            break
        fi
        echo "container-test: $candidate is installed but does not work here ($candidate info fails)" >&2
    fi
done
if [ -z "$ENGINE" ]; then
    echo "SKIPPED container-test: no working podman or docker"
    exit 0
fi

# A static binary.
HOST_TARGET=$(rustc -vV | sed -n 's/^host: //p')
ARCH=${HOST_TARGET%%-*}
MUSL="$ARCH-unknown-linux-musl"
if rustup target add "$MUSL" > /dev/null 2>&1; then
    cargo build --release --target "$MUSL"
    BINARY="target/$MUSL/release/echoloop"
else
    echo "container-test: the $MUSL target cannot be added: a static glibc build instead"
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$HOST_TARGET"
    BINARY="target/$HOST_TARGET/release/echoloop"
fi
if ldd "$BINARY" 2>&1 | grep -q '=>'; then
    echo "container-test: $BINARY is not static:" >&2
    ldd "$BINARY" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/echoloop-container.XXXXXX)
IMAGE="localhost/echoloop:test-$$"
CONTAINER="echoloop-test-$$"
cleanup() {
    "$ENGINE" rm -f "$CONTAINER" > /dev/null 2>&1 || true
    [ "$KEEP_IMAGE" = 1 ] || "$ENGINE" rmi -f "$IMAGE" > /dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cp Containerfile "$WORK/Containerfile"
cp "$BINARY" "$WORK/echoloop"
"$ENGINE" build -t "$IMAGE" -f "$WORK/Containerfile" "$WORK"

# The descriptor limit: the engine's default (podman: 1048576) cannot exceed our own hard limit.
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
RUN=("$ENGINE" run --ulimit "nofile=$NOFILE:$NOFILE")

# Can this engine start a container here at all? A failure of the OCI runtime itself (crun or
# runc: no cgroups, no namespaces, limits it may not set, as in a sandbox) is the machine's, not
# the image's: skip, saying so. Any other failure of `echoloop --version` in the image fails.
set +e
probe=$("${RUN[@]}" --rm "$IMAGE" --version 2>&1)
status=$?
set -e
if [ "$status" != 0 ] && grep -Eq 'OCI runtime|OCI permission|crun: |runc: ' <<< "$probe"; then
    echo "SKIPPED container-test: $ENGINE built the image but cannot start a container here: $(tail -n 1 <<< "$probe")"
    exit 0
fi
if [ "$status" != 0 ] || ! grep -q '^echoloop ' <<< "$probe"; then
    echo "container-test: FAILED: echoloop --version in the image exited $status:" >&2
    printf '%s\n' "$probe" >&2
    exit 1
fi

# Published on a loopback port the engine picks.
"${RUN[@]}" -d --name "$CONTAINER" -p 127.0.0.1::7007/tcp "$IMAGE" > /dev/null
for _ in $(seq 100); do
    LOGS=$("$ENGINE" logs "$CONTAINER" 2> /dev/null || true)
    [ "$(grep -c '^listening ' <<< "$LOGS")" -ge 2 ] && break
    sleep 0.1
done
expected=$'listening tcp 0.0.0.0:7007 echo\nlistening udp 0.0.0.0:7007 echo'
if [ "$(grep '^listening ' <<< "$LOGS")" != "$expected" ]; then
    echo "container-test: FAILED: expected the listening lines, got:" >&2
    printf '%s\n' "$LOGS" >&2
    exit 1
fi
PORT=$("$ENGINE" port "$CONTAINER" 7007/tcp | head -n 1 | sed 's/.*://')

# One echo, in Python for a clean byte-exact check with a timeout.
python3 - "$PORT" <<'PY'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(b"hello from the host\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
assert data == b"hello from the host\n", data
PY
echo "container-test: ok ($ENGINE, image $(du -h "$WORK/echoloop" | cut -f1) binary, listening lines and one echo)"
