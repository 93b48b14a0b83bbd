#!/usr/bin/env python3
"""The first server of every tutorial: blocking sockets, one client at a time.

Client A connects and stays connected without sending. Client B connects (the kernel completes
the handshake: the listen backlog does that, not the server) and sends `hello`, but the server is
blocked in A's recv() and B waits. Only when A leaves does the server accept B.

usage: python3 docs/guide/blocking_one_at_a_time.py
"""
import socket
import threading
import time

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
addr = listener.getsockname()


def serve_forever():
    while True:
        conn, _ = listener.accept()  # blocks until a client comes
        with conn:
            while data := conn.recv(1024):  # blocks until this client sends or leaves
                conn.sendall(data)


threading.Thread(target=serve_forever, daemon=True).start()
a = socket.create_connection(addr)
b = socket.create_connection(addr)
b.sendall(b"hello")
b.settimeout(1.0)
start = time.monotonic()
try:
    print("B got", b.recv(1024))
except socket.timeout:
    print(f"B waited {time.monotonic() - start:.1f} s: no answer while A is connected")
a.close()
b.settimeout(5.0)
start = time.monotonic()
print(f"A left; B got {b.recv(1024)!r} {time.monotonic() - start:.3f} s later")
