#!/usr/bin/env python3
# The tutorial TCP client (Core Python Programming's tsTclnt.py), unchanged in spirit:
# read a line from the keyboard, send it, print what one recv(1024) brings back.
# The only change: host and port come from the command line.
#   python3 tcp_timestamp_client.py 127.0.0.1 21567
from socket import *
import sys

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 21567
BUFSIZ = 1024
ADDR = (HOST, PORT)

tcpCliSock = socket(AF_INET, SOCK_STREAM)
tcpCliSock.connect(ADDR)

while True:
    data = input('> ')
    if not data:
        break
    tcpCliSock.send(data.encode('utf-8'))
    data = tcpCliSock.recv(BUFSIZ)
    if not data:
        break
    print(data.decode('utf-8'))

tcpCliSock.close()
