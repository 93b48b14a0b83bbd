#!/usr/bin/env python3
"""Soak driver: well-behaved verifying clients plus faulty ones against one echoloop server.

Loopback only, bounded in time, stops by itself. The server must be an echo server with line
framing (`echoloop serve --framing line ...`), so that over-long lines have a rule to break.

Good clients send numbered lines of random bytes (no newline) and check that every reply is
their own line, byte for byte, in order; bytes lost, changed or reordered are counted. Faulty
clients, round-robin: slow readers (write a lot, read a trickle), resets mid-stream (SO_LINGER 0),
half-closes (send, FIN, read to EOF), over-long lines, binary garbage, idle sleepers, and
connect/close churn. The verdict is printed as JSON on stdout.

usage: soak.py HOST PORT SECONDS
"""
import json
import os
import random
import socket
import struct
import sys
import threading
import time

HOST, PORT, SECONDS = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
DEADLINE = time.monotonic() + SECONDS
GOOD_CLIENTS = 16
FAULTY_THREADS = 12

lock = threading.Lock()
totals = {
    "good_clients": GOOD_CLIENTS,
    "good_messages": 0,
    "good_bytes": 0,
    "bytes_lost_or_changed": 0,
    "good_reconnects": 0,
    "max_latency_ms": 0.0,
    "faults": {},
    "fault_errors": {},
}


def count(kind, table="faults"):
    with lock:
        totals[table][kind] = totals[table].get(kind, 0) + 1


def connect():
    s = socket.create_connection((HOST, PORT), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_line(s, buf):
    """Returns (line, rest of buffer); line without its newline."""
    while b"\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("EOF")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest


def good_client(index):
    rng = random.Random(index)
    s, buf, seq = connect(), b"", 0
    while time.monotonic() < DEADLINE:
        body = bytes(rng.choice(range(256)) for _ in range(rng.randint(1, 2000)))
        body = body.replace(b"\n", b"_").replace(b"\r", b"_")
        line = struct.pack(">IQ", index, seq).hex().encode() + b" " + body
        started = time.monotonic()
        try:
            s.sendall(line + b"\n")
            reply, buf = read_line(s, buf)
        except (ConnectionError, OSError) as e:
            # The server must never drop a good client: count it as loss, reconnect.
            with lock:
                totals["bytes_lost_or_changed"] += len(line)
                totals["good_reconnects"] += 1
            s, buf = connect(), b""
            continue
        latency = (time.monotonic() - started) * 1000
        with lock:
            totals["good_messages"] += 1
            totals["good_bytes"] += len(line)
            totals["max_latency_ms"] = max(totals["max_latency_ms"], latency)
            if reply != line:
                totals["bytes_lost_or_changed"] += len(line)
        seq += 1
    s.close()


def slow_reader(rng):
    s = connect()
    s.settimeout(2)
    try:
        for _ in range(50):
            s.send(b"x" * 60000 + b"\n")
            s.recv(100)
            time.sleep(0.02)
    except OSError:
        pass
    s.close()


def reset_mid_stream(rng):
    s = connect()
    s.sendall(os.urandom(rng.randint(1, 100000)).replace(b"\n", b"-"))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def half_close(rng):
    s = connect()
    payload = b"half %d\n" % rng.randint(0, 1 << 30)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    if got != payload:
        count("half_close_mismatch", "fault_errors")
    s.close()


def over_long_line(rng):
    s = connect()
    s.sendall(b"y" * 200000 + b"\nafter\n")
    buf = b""
    line, buf = read_line(s, buf)
    if not line.startswith(b"error: frame too long"):
        count("no_error_line", "fault_errors")
    line, buf = read_line(s, buf)
    if line != b"after":
        count("not_usable_after_error", "fault_errors")
    s.close()


def garbage(rng):
    s = connect()
    s.sendall(os.urandom(rng.randint(1, 50000)))
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()


def idle_sleeper(rng):
    s = connect()
    time.sleep(min(3, max(0, DEADLINE - time.monotonic())))
    s.close()


def churn(rng):
    for _ in range(20):
        s = connect()
        s.close()


FAULTS = [slow_reader, reset_mid_stream, half_close, over_long_line, garbage, idle_sleeper, churn]


def faulty_thread(index):
    rng = random.Random(1000 + index)
    i = index
    while time.monotonic() < DEADLINE:
        fault = FAULTS[i % len(FAULTS)]
        i += 1
        try:
            fault(rng)
            count(fault.__name__)
        except (OSError, ConnectionError) as e:
            count(fault.__name__)
            count("%s: %s" % (fault.__name__, type(e).__name__), "fault_errors")


threads = [threading.Thread(target=good_client, args=(i,)) for i in range(GOOD_CLIENTS)]
threads += [threading.Thread(target=faulty_thread, args=(i,)) for i in range(FAULTY_THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(totals, sort_keys=True))
