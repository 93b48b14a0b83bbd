#!/usr/bin/env python3
"""Level-triggered poll() with write interest left on: a busy loop.

One client connects and sends nothing. The server polls it for one second, twice:
  1. registered POLLIN | POLLOUT although it has nothing to send (the bug);
  2. registered POLLIN only, POLLOUT added only while bytes wait (what echoloop derives).
A socket with room in its send buffer is *always* writable, and a level-triggered poll() reports
it every time it is asked, so (1) never sleeps. Counts the loop turns in each second.

usage: python3 docs/guide/lt_busy_loop.py
"""
import select
import socket
import time

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
client = socket.create_connection(listener.getsockname())
conn, _ = listener.accept()
conn.setblocking(False)


def one_second(events):
    poller = select.poll()
    poller.register(conn, events)
    turns = 0
    writable_reports = 0
    end = time.monotonic() + 1.0
    while (left := end - time.monotonic()) > 0:
        ready = poller.poll(left * 1000)  # milliseconds
        turns += 1
        for _fd, flags in ready:
            if flags & select.POLLOUT:
                writable_reports += 1  # nothing to write: the report is useless
    return turns, writable_reports


turns, reports = one_second(select.POLLIN | select.POLLOUT)
print(f"POLLIN|POLLOUT, nothing to send: {turns} loop turns in 1 s, {reports} POLLOUT reports")
turns, reports = one_second(select.POLLIN)
print(f"POLLIN only:                     {turns} loop turns in 1 s, {reports} POLLOUT reports")
