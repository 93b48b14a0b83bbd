#!/usr/bin/env python3
"""Edge-triggered epoll (EPOLLET) with one read per event: a stall.

A client sends 100 bytes in one send(). The echo server gets one EPOLLIN edge for them, and
  1. reads once, 16 bytes, per event (the bug): 84 bytes stay in the kernel, and no new edge
     comes for them, because nothing new arrives: the client waits for its echo, the server waits
     for an event. Both wait forever (here: one second).
  2. reads until BlockingIOError (EAGAIN) per event (what echoloop's drain_reads does): all 100.

usage: python3 docs/guide/et_stall.py
"""
import select
import socket
import time

READ_SIZE = 16  # small on purpose: a real server meets the same with 64 KiB and a fast client


def run(drain):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    conn, _ = listener.accept()
    conn.setblocking(False)
    ep = select.epoll()
    ep.register(conn.fileno(), select.EPOLLIN | select.EPOLLET)
    client.sendall(bytes(range(100)))
    events = reads = echoed = 0
    end = time.monotonic() + 1.0
    while (left := end - time.monotonic()) > 0:
        for _fd, _flags in ep.poll(left):
            events += 1
            while True:
                try:
                    data = conn.recv(READ_SIZE)
                except BlockingIOError:
                    break  # EAGAIN: the kernel has nothing more; the next edge will come
                reads += 1
                conn.sendall(data)
                echoed += len(data)
                if not drain:
                    break  # the bug: stop after one read
    client.settimeout(0.2)
    got = b""
    try:
        while len(got) < 100:
            chunk = client.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    name = "drain to EAGAIN" if drain else "one read per event"
    print(f"{name:18}: {events} event(s), {reads} read(s), client got {len(got)} of 100 bytes back")


run(drain=False)
run(drain=True)
