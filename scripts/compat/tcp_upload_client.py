#!/usr/bin/env python3
"""The tutorial upload client: send the file's size, wait for the echo, then stream the file.

Usage: tcp_upload_client.py HOST PORT FILE
"""
import os
import socket
import sys

HOST, PORT, PATH = sys.argv[1], int(sys.argv[2]), sys.argv[3]
BUFSIZ = 1024

size = os.path.getsize(PATH)
tcpCliSock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcpCliSock.connect((HOST, PORT))
tcpCliSock.send(str(size).encode())          # the size first...
echo = tcpCliSock.recv(BUFSIZ).decode()      # ...and wait: no "sticky packets"
if echo != str(size):
    print('server said:', echo.strip())
    sys.exit(1)
with open(PATH, 'rb') as f:
    while True:
        data = f.read(BUFSIZ)
        if not data:
            break
        tcpCliSock.sendall(data)
print('sent', size, 'bytes')
tcpCliSock.close()
