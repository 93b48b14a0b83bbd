#!/usr/bin/env python3
# The tutorial UDP client (Core Python Programming's tsUclnt.py), unchanged in spirit:
# read a line, sendto() it, print the datagram recvfrom() brings back.
# The only change: host and port come from the command line.
#   python3 udp_timestamp_client.py 127.0.0.1 21567
from socket import *
import sys

HOST = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 21567
BUFSIZ = 1024
ADDR = (HOST, PORT)

udpCliSock = socket(AF_INET, SOCK_DGRAM)

while True:
    data = input('> ')
    if not data:
        break
    udpCliSock.sendto(data.encode('utf-8'), ADDR)
    data, ADDR = udpCliSock.recvfrom(BUFSIZ)
    if not data:
        break
    print(data.decode('utf-8'))

udpCliSock.close()
