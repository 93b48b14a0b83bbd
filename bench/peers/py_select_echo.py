#!/usr/bin/env python3
"""The select.select() echo server of the Python socket tutorials: echoloop's Python reference peer.

This is the pattern users start from, as the tutorials teach it:
  - `inputs`: the sockets select() watches for reading (the listener and every client);
  - `outputs`: the clients with bytes waiting, watched for writing only while they have some;
  - `message_dict`: per client, the bytes received and not yet sent back.
Each turn: select(); on a readable socket accept() or recv() (appending to the client's bytes),
on a writable one send() what the kernel takes. Non-blocking sockets: a short send keeps the rest.
What the pattern lacks, this lacks too: no backpressure (a client that never reads grows its
bytes here), and select() cannot watch a descriptor numbered FD_SETSIZE (1024) or more, so such a
connection is closed at once (said once on stderr).

usage:  py_select_echo.py PORT        (0 picks a free port; 127.0.0.1, backlog 4096)
stdout: listening tcp 127.0.0.1:PORT  stop: SIGTERM
"""
import select
import socket
import sys

FD_SETSIZE = 1024
RECV_BYTES = 65536


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print("usage: py_select_echo.py PORT", file=sys.stderr)
        sys.exit(2)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(4096)
    listener.setblocking(False)
    print("listening tcp 127.0.0.1:%d" % listener.getsockname()[1], flush=True)

    inputs = [listener]
    outputs = []
    message_dict = {}
    told_about_fd_setsize = False

    def close(client):
        for watched in (inputs, outputs):
            if client in watched:
                watched.remove(client)
        message_dict.pop(client, None)
        client.close()

    while True:
        readable, writable, broken = select.select(inputs, outputs, inputs)
        for sock in readable:
            if sock is listener:
                try:
                    client, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:  # out of descriptors: the next turn tries again
                    print("accept: %s" % e, file=sys.stderr)
                    continue
                if client.fileno() >= FD_SETSIZE:
                    if not told_about_fd_setsize:
                        print("descriptor %d >= FD_SETSIZE: select() cannot watch it; closed"
                              % client.fileno(), file=sys.stderr)
                        told_about_fd_setsize = True
                    client.close()
                    continue
                client.setblocking(False)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                inputs.append(client)
                message_dict[client] = bytearray()
                continue
            if sock not in message_dict:  # closed earlier this turn
                continue
            try:
                data = sock.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                close(sock)
                continue
            if not data:  # the client is done sending: close once what it is owed is sent
                inputs.remove(sock)
                if not message_dict[sock]:
                    close(sock)
                continue
            message_dict[sock] += data
            if sock not in outputs:
                outputs.append(sock)
        for sock in writable:
            pending = message_dict.get(sock)
            if pending is None:
                continue
            try:
                sent = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                close(sock)
                continue
            del pending[:sent]
            if not pending:
                outputs.remove(sock)
                if sock not in inputs:  # it had sent its last bytes: all are back now
                    close(sock)
        for sock in broken:
            if sock is not listener and sock in message_dict:
                close(sock)


if __name__ == "__main__":
    main()
