#!/usr/bin/env python3
"""Attacks replayed: issue 18's "Why" list, tried against a real echoloop, with figures.

Each attack starts fresh server(s) from the binary under test on loopback, port 0, with
`--trusted none` (loopback is trusted by default, and trusted sources skip the per-source
limits), runs for a few seconds, and measures:

- CPU: seconds the server process used during the attack (utime + stime from /proc/PID/stat);
- RSS: the server's peak resident memory (VmHWM from /proc/PID/status), in MiB;
- p99: another client's round trip on the SAME server during the attack, in ms, measured by a
  separate prober process (so the attacker's threads cannot slow the measurement through
  Python's GIL). What a round trip is depends on the service: a line echoed back (echo), a
  connection's first line (daytime, chargen), a `LIST` answered up to `END` (files: a server
  serves one folder, so the prober lists the same folder as the attacker, 300 files), a line
  from one prober member reaching another (chat);
- the attack's own figure (datagrams, replies per request, connections refused, ...).

"before" is a baseline binary (`--baseline BIN`), an old echoloop that knows none of the new
flags: they are passed to the binary under test only. A flag the binary under test does not
list in `serve --help` (a defence not merged yet) turns that row into "n/a: flag missing".

Loopback only, every process started here is stopped by its PID, the whole run takes about a
minute per binary. Attack 1 forges a datagram's source with a raw socket (IP_HDRINCL), which
needs root; without it the row says so. Run through scripts/attack.sh, which builds first.

usage: attack.py --after BIN [--baseline BIN] [--only 1,2,...]
       attack.py --probe KIND ADDR      (the prober: runs until stdin closes, prints JSON)
"""
import argparse
import atexit
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

LOOPBACK = "127.0.0.1"
ATTACKER = "127.0.0.2"  # one source that is not the server's own address
PROBE_TIMEOUT = 3.0  # a round trip slower than this counts as this long, and is retried
HZ = os.sysconf("SC_CLK_TCK")
STARTED = []  # every server process this run started, stopped by PID at exit


# ---------------------------------------------------------------- servers and measurements


class Server:
    """One `echoloop serve` process; its addresses come from its `listening` lines."""

    def __init__(self, binary, args, log_dir):
        self.command = [binary, "serve", *args]
        self.log = open(os.path.join(log_dir, "server-%d.log" % len(STARTED)), "wb")
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL
        )
        STARTED.append(self.proc)
        self.pid = self.proc.pid
        self.addrs = {"tcp": [], "udp": [], "metrics": []}
        wanted = sum(args.count(f) for f in ("-l", "-u", "--metrics"))
        deadline = time.monotonic() + 15
        lines = b""
        while sum(map(len, self.addrs.values())) < wanted:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError("no listening lines from: " + " ".join(self.command))
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                self.proc.wait()
                with open(self.log.name, "rb") as log:
                    said = log.read().decode(errors="replace").strip().splitlines()[-1:]
                raise RuntimeError("%s: %s" % (" ".join(self.command[2:]), " ".join(said)))
            lines += chunk
            while b"\n" in lines:
                line, lines = lines.split(b"\n", 1)
                m = re.match(r"listening (tcp|udp|metrics) (\S+):(\d+)( \S+)?$", line.decode())
                if m:
                    self.addrs[m.group(1)].append((m.group(2), int(m.group(3))))

    def tcp(self):
        return self.addrs["tcp"][0]

    def udp(self):
        return self.addrs["udp"][0]

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime

    def peak_rss_mib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def scrape(self, timeout=5.0):
        """The metrics page as {(name, labels): value}, or None when it is not answered in time."""
        page = http_get(self.addrs["metrics"][0], timeout)
        if page is None:
            return None
        values = {}
        for line in page.decode(errors="replace").splitlines():
            m = re.match(r"(\w+)(\{[^}]*\})? (\S+)$", line)
            if m:
                values[(m.group(1), m.group(2) or "")] = float(m.group(3))
        return values

    def stop(self):
        stop_process(self.proc)
        self.log.close()


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_all():
    for proc in STARTED:
        stop_process(proc)


def metric(values, name, **labels):
    """The sum of a family's series whose labels include `labels`."""
    if values is None:
        return None
    want = ['%s="%s"' % kv for kv in labels.items()]
    return sum(v for (n, l), v in values.items() if n == name and all(w in l for w in want))


def http_get(addr, timeout):
    """The metrics page, or None; `scrape_outcome` says what happened."""
    outcome, page = scrape_outcome(addr, timeout)
    return page if outcome == "answered" else None


def scrape_outcome(addr, timeout):
    """One `GET /metrics`: ("answered", page), or why not: closed unanswered, reset, timed out."""
    got = b""
    try:
        s = socket.create_connection(addr, timeout=timeout)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: echoloop\r\nConnection: close\r\n\r\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
    except socket.timeout:
        return "timed out", None
    except ConnectionResetError:
        return "reset", None
    except OSError as e:
        return e.strerror or "error", None
    if got.startswith(b"HTTP/1.1 200") and got.endswith(b"\n"):
        return "answered", got
    return "closed unanswered" if not got else "cut short", None


class Prober:
    """The other client: a separate process doing round trips until told to stop."""

    def __init__(self, kind, addr):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--probe", kind, "%s:%d" % addr],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        STARTED.append(self.proc)
        time.sleep(0.5)  # connected and warm before the attack begins

    def p99(self):
        """Stops the prober; returns '<p99> ms' over its round trips."""
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait()
        samples = sorted(json.loads(out or b"[]"))
        if not samples:
            return "none answered"
        value = samples[max(0, -(-len(samples) * 99 // 100) - 1)]
        if value >= PROBE_TIMEOUT * 1000:
            return ">%d" % (PROBE_TIMEOUT * 1000)
        return "%.1f" % value


# ---------------------------------------------------------------- the prober process


def probe_main(kind, addr):
    host, port = addr.rsplit(":", 1)
    addr = (host, int(port))
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    samples = []
    kinds = {"echo": probe_echo, "line": probe_line, "files": probe_files, "chat": probe_chat}
    kinds[kind](addr, stop, samples)
    print(json.dumps(samples))


def read_until(s, done, buf=b""):
    """Reads until done(buf) holds; returns buf. Raises on EOF or timeout."""
    while not done(buf):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("EOF")
        buf += chunk
    return buf


def paced(stop, per_second, samples, connect, round_trip):
    """Round trips at a fixed pace; a failed one counts as PROBE_TIMEOUT and reconnects."""
    conn, n = None, 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            if conn is None:
                conn = connect()
            round_trip(conn, n)
            samples.append((time.monotonic() - started) * 1000)
        except OSError:
            samples.append(PROBE_TIMEOUT * 1000)
            conn = None
        n += 1
        stop.wait(max(0.0, 1 / per_second - (time.monotonic() - started)))


def connect_to(addr):
    s = socket.create_connection(addr, timeout=PROBE_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def probe_echo(addr, stop, samples):
    def round_trip(s, n):
        line = b"probe %d\n" % n
        s.sendall(line)
        read_until(s, lambda b: len(b) >= len(line))

    paced(stop, 100, samples, lambda: connect_to(addr), round_trip)


def probe_line(addr, stop, samples):
    # A new connection each time: daytime closes after its line, chargen never stops.
    def round_trip(_, n):
        s = connect_to(addr)
        read_until(s, lambda b: b"\n" in b)
        s.close()

    paced(stop, 20, samples, lambda: True, round_trip)  # under --accept-rate's 50/s


def probe_files(addr, stop, samples):
    def round_trip(s, n):
        s.sendall(b"LIST\n")
        read_until(s, lambda b: b.endswith(b"END\n"))

    paced(stop, 50, samples, lambda: connect_to(addr), round_trip)


def probe_chat(addr, stop, samples):
    def connect():
        sender, receiver = connect_to(addr), connect_to(addr)
        read_until(receiver, lambda b: b"\n" in b)  # `* you are userN`
        drain = threading.Thread(target=drain_quietly, args=(sender,), daemon=True)
        drain.start()
        return sender, receiver, [b""]

    def round_trip(conn, n):
        sender, receiver, pending = conn
        mark = b"] probe %d\n" % n
        sender.sendall(b"probe %d\n" % n)
        got = read_until(receiver, lambda b: mark in b, pending[0])
        pending[0] = got.split(mark, 1)[1]

    paced(stop, 10, samples, connect, round_trip)  # under --chat-rate's 20/s


def drain_quietly(s):
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


# ---------------------------------------------------------------- the attacks


class Run:
    """One attack against one binary: its servers, measurements and the row's cells."""

    def __init__(self, ctx, binary, after):
        self.ctx, self.binary, self.after = ctx, binary, after
        self.servers = []

    def serve(self, args, after_flags=()):
        """Starts a server; `after_flags` go to the binary under test only."""
        extra = list(self.ctx.trusted_none) + list(after_flags) if self.after else []
        server = Server(self.binary, args + extra, self.ctx.log_dir)
        self.servers.append(server)
        return server

    def close(self):
        for server in self.servers:
            server.stop()


def cells(cpu, rss, p99, what):
    return {"cpu": "%.2f" % cpu, "rss": "%.1f" % rss, "p99": p99, "what": what}


def forge_udp(src, dst, payload):
    """Sends one UDP datagram with a forged source address (raw socket, IP_HDRINCL: root)."""
    (sip, sport), (dip, dport) = src, dst
    length = 8 + len(payload)
    pseudo = socket.inet_aton(sip) + socket.inet_aton(dip) + struct.pack("!BBH", 0, 17, length)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0,
        socket.inet_aton(sip), socket.inet_aton(dip),
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(ip + udp, (dip, 0))
    raw.close()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def can_forge():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        return True
    except OSError:
        return False


def sent_datagrams(servers):
    """Datagrams the servers sent so far, from their metrics; None if a page was not answered."""
    total = 0
    for server in servers:
        value = metric(server.scrape(), "echoloop_datagrams_sent_total", transport="udp")
        if value is None:
            return None
        total += value
    return total


def udp_loop_of(servers, first, second, window=3.0):
    """Forges one datagram from `first` to `second`; counts what the servers send next."""
    probe = Prober("echo", servers[0].tcp())
    before = sent_datagrams(servers)
    cpu0 = sum(s.cpu_seconds() for s in servers)
    forge_udp(first, second, b"loop\n")
    time.sleep(window)
    cpu1 = sum(s.cpu_seconds() for s in servers)
    after = sent_datagrams(servers)
    p99 = probe.p99()
    if before is None or after is None:
        what = "metrics page not answered"
    else:
        what = "%d datagrams sent in %.0f s" % (after - before, window)
    return cells(cpu1 - cpu0, servers[0].peak_rss_mib(), p99, what)


def attack_udp_self_loop(r):
    server = r.serve(["-p", "echo", "-l", "127.0.0.1:0", "-u", "127.0.0.1:0",
                      "--metrics", "127.0.0.1:0"])
    return udp_loop_of([server], server.udp(), server.udp())


def attack_udp_echo_pair(r):
    a = r.serve(["-p", "echo", "-l", "127.0.0.1:0", "-u", "127.0.0.1:0",
                 "--metrics", "127.0.0.1:0"])
    b = r.serve(["-p", "echo", "-l", "127.0.0.1:0", "-u", "127.0.0.1:0",
                 "--metrics", "127.0.0.1:0"])
    return udp_loop_of([a, b], a.udp(), b.udp())


def amplification(protocol, payload, probe_kind):
    def attack(r):
        server = r.serve(["-p", protocol, "-l", "127.0.0.1:0", "-u", "127.0.0.1:0",
                          "--metrics", "127.0.0.1:0"], ["--udp-rate-limit", "100"])
        probe = Prober(probe_kind, server.tcp())
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ATTACKER, 0))
        sizes = []  # sizes of the replies the attacker managed to read
        done = threading.Event()

        def receive():
            s.settimeout(0.2)
            while not done.is_set():
                try:
                    sizes.append(len(s.recv(65536)))
                except OSError:
                    pass

        receiver = threading.Thread(target=receive)
        receiver.start()
        page0 = server.scrape()
        cpu0 = server.cpu_seconds()
        sent, end = 0, time.monotonic() + 2.0
        while time.monotonic() < end:
            for _ in range(200):
                s.sendto(payload, server.udp())
            sent += 200
        time.sleep(0.3)  # replies still in flight
        cpu1 = server.cpu_seconds()
        page1 = server.scrape()
        done.set()
        receiver.join()
        s.close()
        p99 = probe.p99()
        if page0 is None or page1 is None:
            return cells(cpu1 - cpu0, server.peak_rss_mib(), p99, "metrics page not answered")
        got = metric(page1, "echoloop_datagrams_received_total") - metric(
            page0, "echoloop_datagrams_received_total")
        answered = metric(page1, "echoloop_datagrams_sent_total") - metric(
            page0, "echoloop_datagrams_sent_total")
        mean = sum(sizes) / len(sizes) if sizes else 0
        # Wire bytes: each datagram also carries 28 bytes of IPv4 and UDP headers.
        gain = answered * (mean + 28) / max(1, got * (len(payload) + 28))
        what = "%d of %d requests answered (%.3f), reply %.0f B for %d B, out/in %.2f" % (
            answered, got, answered / max(1, got), mean, len(payload), gain)
        return cells(cpu1 - cpu0, server.peak_rss_mib(), p99, what)

    return attack


def attack_pipelined_list(r):
    folder = tempfile.mkdtemp(prefix="attack-files-", dir=r.ctx.log_dir)
    for i in range(300):
        with open(os.path.join(folder, "document-%04d-of-the-attack-folder.txt" % i), "wb") as f:
            f.write(b"x" * i)
    server = r.serve(["-p", "files", "--dir", folder, "-l", "127.0.0.1:0"])
    probe = Prober("files", server.tcp())
    cpu0 = server.cpu_seconds()
    s = connect_to(server.tcp())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"LIST\n" * 6553)  # 32 KiB in one write
    read, end = 0, time.monotonic() + 4.0
    s.settimeout(0.1)
    while time.monotonic() < end:  # a slow reader: 4 KiB every 10 ms
        try:
            read += len(s.recv(4096))
        except OSError:
            pass
        time.sleep(0.01)
    cpu1 = server.cpu_seconds()
    s.close()
    what = "6553 LISTs in one write; flooder read %.1f MiB in 4 s" % (read / 2**20)
    return cells(cpu1 - cpu0, server.peak_rss_mib(), probe.p99(), what)


def chat_room(server, members):
    """Members that join and never read (the joins fit in their socket buffers)."""
    room = []
    for _ in range(members):
        room.append(connect_to(server.tcp()))
    return room


def dropped_members(server):
    """Members the server dropped (slow readers, at the queue limit), by its own count."""
    value = metric(server.scrape(), "echoloop_clients_dropped_total")
    return "metrics page not answered" if value is None else "%d" % value


def attack_chat_who_flood(r):
    server = r.serve(["-p", "chat", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
                     ["--chat-rate", "20"])
    room = chat_room(server, 300)
    probe = Prober("chat", server.tcp())
    cpu0 = server.cpu_seconds()
    flood = b"/who\n" * 6553
    writes, end = 0, time.monotonic() + 4.0
    flooders = []
    while time.monotonic() < end:  # four flooders; one the server drops is replaced
        while len(flooders) < 4:
            f = socket.socket()
            f.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            f.connect(server.tcp())
            f.setblocking(False)
            flooders.append(f)
        for f in list(flooders):
            try:
                f.send(flood)
                writes += 1
            except BlockingIOError:
                pass  # the server is not reading it: paused, still connected
            except OSError:  # reset or broken pipe: the server dropped it
                flooders.remove(f)
                f.close()
        time.sleep(0.05)
    cpu1 = server.cpu_seconds()
    p99 = probe.p99()
    for s in room + flooders:
        s.close()
    what = "%d writes of 32 KiB of /who taken (300 members); members dropped: %s" % (
        writes, dropped_members(server))
    return cells(cpu1 - cpu0, server.peak_rss_mib(), p99, what)


def attack_chat_line_flood(r):
    server = r.serve(["-p", "chat", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
                     ["--chat-rate", "20"])
    readers = []
    for _ in range(20):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        s.connect(server.tcp())
        readers.append(s)
    probe = Prober("chat", server.tcp())
    lines_seen = [0] * len(readers)
    stop = threading.Event()

    def read_steadily(i, s):  # a terminal's pace: 16 KiB every 50 ms
        s.settimeout(0.05)
        while not stop.is_set():
            try:
                chunk = s.recv(16384)
                if not chunk:
                    return
                lines_seen[i] += chunk.count(b"] flood ")
            except socket.timeout:
                continue
            except OSError:
                return
            stop.wait(0.05)

    threads = [threading.Thread(target=read_steadily, args=(i, s)) for i, s in enumerate(readers)]
    for t in threads:
        t.start()
    cpu0 = server.cpu_seconds()
    flooder = connect_to(server.tcp())
    flooder.settimeout(5.0)
    written, end = 0, time.monotonic() + 5.0
    lines = b"".join(b"flood %05d %s\n" % (i, b"x" * 500) for i in range(20000))
    try:
        while written < len(lines) and time.monotonic() < end:
            written += flooder.send(lines[written:written + 65536])
    except OSError:
        pass
    stop.wait(max(0.0, end - time.monotonic()))
    cpu1 = server.cpu_seconds()
    stop.set()
    for t in threads:
        t.join()
    p99 = probe.p99()
    for s in readers + [flooder]:
        s.close()
    # A dropped reader still gets what the kernel holds for it (MiBs): its EOF comes late, so
    # the server's own count says who was dropped.
    what = "flooder wrote %d of 20000 lines in 5 s; members dropped: %s of 22; lines a reader got: %d" % (
        lines[:written].count(b"\n"), dropped_members(server), max(lines_seen))
    return cells(cpu1 - cpu0, server.peak_rss_mib(), p99, what)


def per_source(after_flags):
    return lambda r: attack_per_source(r, after_flags)


def attack_per_source(r, after_flags):
    server = r.serve(["-p", "echo", "-l", "127.0.0.1:0"], after_flags)
    probe = Prober("echo", server.tcp())
    cpu0 = server.cpu_seconds()
    conns, failed = [], 0
    for _ in range(2000):
        s = socket.socket()
        s.settimeout(3.0)
        try:
            s.bind((ATTACKER, 0))
            s.connect(server.tcp())
            conns.append(s)
        except OSError:
            s.close()
            failed += 1
    time.sleep(1.0)  # let the server accept, refuse and close
    cpu1 = server.cpu_seconds()
    open_, error_line, silent = 0, 0, 0
    for s in conns:
        s.setblocking(False)
        try:
            first = s.recv(256)
            if first.startswith(b"error:"):
                error_line += 1
            else:
                silent += 1
        except BlockingIOError:
            open_ += 1
        except OSError:
            silent += 1
        s.close()
    what = "2000 from one source: %d held, %d got an error line, %d closed without a byte" % (
        open_, error_line, silent)
    if failed:
        what += ", %d connects failed" % failed
    return cells(cpu1 - cpu0, server.peak_rss_mib(), probe.p99(), what)


def attack_memory(r):
    server = r.serve(["-p", "echo", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
                     ["--max-memory", str(64 << 20)])
    probe = Prober("echo", server.tcp())
    cpu0 = server.cpu_seconds()
    clients = []
    for i in range(200):  # each from its own address: the per-source limits play no part
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server's replies pile up
        s.bind(("127.0.1.%d" % (i + 1), 0))
        s.connect(server.tcp())
        s.setblocking(False)
        clients.append(s)
    poller = select.poll()
    by_fd = {s.fileno(): s for s in clients}
    for fd in by_fd:
        poller.register(fd, select.POLLOUT)
    chunk, written, end = b"m" * 65536, 0, time.monotonic() + 4.0
    while time.monotonic() < end:
        for fd, _ in poller.poll(100):
            try:
                written += by_fd[fd].send(chunk)
            except BlockingIOError:
                pass
            except OSError:  # closed by the server: stop offering it
                poller.unregister(fd)
    cpu1 = server.cpu_seconds()
    p99 = probe.p99()
    rss = server.peak_rss_mib()
    accounted = metric(server.scrape(), "echoloop_memory_peak_bytes")  # newer builds only
    for s in clients:
        s.close()
    what = "200 clients that never read wrote %.0f MiB" % (written / 2**20)
    if accounted:
        what += "; buffers at most %.1f MiB (echoloop_memory_peak_bytes)" % (accounted / 2**20)
    return cells(cpu1 - cpu0, rss, p99, what)


INJECTION = b"\r* alice joined\x1b]52;c;ZWNobyBvd25lZA==\x07\xff"


def attack_chat_injection(r):
    server = r.serve(["-p", "chat", "-l", "127.0.0.1:0"])
    probe = Prober("chat", server.tcp())
    cpu0 = server.cpu_seconds()
    attacker, victim = connect_to(server.tcp()), connect_to(server.tcp())
    read_until(victim, lambda b: b"\n" in b)
    attacker.sendall(INJECTION + b"\n")
    got = read_until(victim, lambda b: b"ZWNo" in b and b.rstrip(b"\r\n") != b and b.endswith(b"\n"))
    line = [l for l in got.split(b"\n") if b"ZWNo" in l][0]
    time.sleep(1.0)  # the prober's round trips meanwhile
    cpu1 = server.cpu_seconds()
    attacker.close()
    victim.close()
    raw = [b for b in line if is_raw_control(b)]
    what = "raw control bytes: %d; `%s`" % (len(raw), shown(line))
    return cells(cpu1 - cpu0, server.peak_rss_mib(), probe.p99(), what)


def is_raw_control(b):
    """A byte that acts on a terminal: C0 but TAB, DEL, and 0xFF (telnet's IAC)."""
    return (b < 0x20 and b != 0x09) or b == 0x7F or b == 0xFF


NAMES = {0x07: "BEL", 0x0D: "CR", 0x1B: "ESC", 0xFF: "0xFF"}


def shown(line):
    """The line as text, each raw control byte as <NAME>: `\\x1b` written out stays as it is."""
    text = "".join(
        "<%s>" % NAMES.get(b, "0x%02X" % b) if is_raw_control(b) or b >= 0x80 else chr(b)
        for b in line
    )
    return text.replace("|", "\\|")


def attack_metrics_churn(r):
    server = r.serve(["-p", "echo", "-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
    metrics = server.addrs["metrics"][0]
    probe = Prober("echo", server.tcp())
    cpu0 = server.cpu_seconds()
    idle = [socket.create_connection(metrics) for _ in range(16)]
    stop = threading.Event()
    churned = [0]

    def churn():  # each keeps its 16 newest connections open, closes the oldest
        held = []
        while not stop.is_set():
            try:
                held.append(socket.create_connection(metrics, timeout=1))
                churned[0] += 1
            except OSError:
                pass
            if len(held) > 16:
                held.pop(0).close()
        for s in held:
            s.close()

    churners = [threading.Thread(target=churn) for _ in range(3)]
    for t in churners:
        t.start()
    time.sleep(0.3)
    outcomes = {}
    for _ in range(50):
        outcome, _ = scrape_outcome(metrics, 2.0)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        time.sleep(0.02)
    stop.set()
    for t in churners:
        t.join()
    cpu1 = server.cpu_seconds()
    for s in idle:
        s.close()
    answered = outcomes.pop("answered", 0)
    what = "real scrapes answered: %d of 50%s (16 idle held, %d churned)" % (
        answered, "".join(", %s: %d" % kv for kv in sorted(outcomes.items())), churned[0])
    return cells(cpu1 - cpu0, server.peak_rss_mib(), probe.p99(), what)


# (number, name, function, flags the binary under test must know, needs root). `--trusted`
# where the defence is a per-source limit: without it loopback is exempt and the row would
# measure nothing.
ATTACKS = [
    ("1a", "UDP loop: forged datagram from the server's own address", attack_udp_self_loop, [], True),
    ("1b", "UDP loop: forged datagram between two echo instances", attack_udp_echo_pair, [], True),
    ("2a", "UDP amplification: empty datagrams at chargen",
     amplification("chargen", b"", "line"), ["--udp-rate-limit", "--trusted"], False),
    ("2b", "UDP amplification: empty datagrams at daytime",
     amplification("daytime", b"", "line"), ["--udp-rate-limit", "--trusted"], False),
    ("2c", "UDP amplification: 64-byte datagrams at echo",
     amplification("echo", b"e" * 64, "echo"), ["--udp-rate-limit", "--trusted"], False),
    ("3", "Pipelined LIST (32 KiB in one write), slow reader", attack_pipelined_list, [], False),
    ("4a", "Chat /who flood", attack_chat_who_flood, ["--chat-rate", "--trusted"], False),
    ("4b", "Chat line flood (20k lines), 20 steady readers", attack_chat_line_flood,
     ["--chat-rate", "--trusted"], False),
    ("5a", "Per-source connections: 2000 from one address",
     per_source(["--max-per-source", "256"]), ["--max-per-source", "--trusted"], False),
    ("5b", "Per-source connections: 2000 from one address, --accept-rate 0",
     per_source(["--max-per-source", "256", "--accept-rate", "0"]),
     ["--max-per-source", "--accept-rate", "--trusted"], False),
    ("6", "Memory: 200 echo clients write, never read", attack_memory, ["--max-memory"], False),
    ("7", "Chat injection: CR, OSC 52, BEL, 0xFF", attack_chat_injection, [], False),
    ("8", "Metrics churn: 16 idle + churn, then real scrapes", attack_metrics_churn, [], False),
]

# The flags each attack's server gets (before and after), for the header.
SERVER_FLAGS = {
    "1a": "-p echo -l 127.0.0.1:0 -u 127.0.0.1:0 --metrics 127.0.0.1:0",
    "1b": "2 x (-p echo -l 127.0.0.1:0 -u 127.0.0.1:0 --metrics 127.0.0.1:0)",
    "2a": "-p chargen -l 127.0.0.1:0 -u 127.0.0.1:0 --metrics 127.0.0.1:0 | after: --udp-rate-limit 100",
    "2b": "-p daytime -l 127.0.0.1:0 -u 127.0.0.1:0 --metrics 127.0.0.1:0 | after: --udp-rate-limit 100",
    "2c": "-p echo -l 127.0.0.1:0 -u 127.0.0.1:0 --metrics 127.0.0.1:0 | after: --udp-rate-limit 100",
    "3": "-p files --dir TMP(300 files) -l 127.0.0.1:0",
    "4a": "-p chat -l 127.0.0.1:0 --metrics 127.0.0.1:0 | after: --chat-rate 20",
    "4b": "-p chat -l 127.0.0.1:0 --metrics 127.0.0.1:0 | after: --chat-rate 20",
    "5a": "-p echo -l 127.0.0.1:0 | after: --max-per-source 256 (and --accept-rate's default 50)",
    "5b": "-p echo -l 127.0.0.1:0 | after: --max-per-source 256 --accept-rate 0",
    "6": "-p echo -l 127.0.0.1:0 --metrics 127.0.0.1:0 | after: --max-memory 67108864 (64 MiB)",
    "7": "-p chat -l 127.0.0.1:0",
    "8": "-p echo -l 127.0.0.1:0 --metrics 127.0.0.1:0",
}

WHAT_IS_MEASURED = {
    "1a": "probe: TCP echo line; figure: datagrams the server sent in the 3 s after one forged datagram",
    "1b": "probe: TCP echo line on instance A; figure: datagrams both sent in 3 s; CPU of both",
    "2a": "attacker 127.0.0.2 floods 2 s; figure: replies/requests by the server's metrics, wire bytes out/in",
    "2b": "as 2a",
    "2c": "as 2a",
    "3": "probe: a second files client, LIST round trips of the same folder",
    "4a": "300 idle members; 4 flooders write 32 KiB of /who every 50 ms and never read (one dropped is replaced), for 4 s; dropped: echoloop_clients_dropped_total",
    "4b": "one member writes 20k lines of 512 B for 5 s; 20 readers read 16 KiB every 50 ms (SO_RCVBUF 32 KiB), +2 probe members; dropped: the server's echoloop_clients_dropped_total",
    "5a": "2000 connects from 127.0.0.2 as fast as they go, all held open; probe from 127.0.0.1",
    "5b": "as 5a, the accept rate off: --max-per-source alone",
    "6": "each client from its own 127.0.1.X (SO_RCVBUF 4 KiB) writes 64 KiB whenever writable, for 4 s",
    "7": "what another member receives; a raw control byte (C0 but TAB, DEL, 0xFF) is shown as <NAME>",
    "8": "3 churners keep 16 connections each; 50 real scrapes 20 ms apart, each GET /metrics answered 200 within 2 s or not",
}


class Context:
    def __init__(self, log_dir, trusted_none):
        self.log_dir, self.trusted_none = log_dir, trusted_none


def flags_of(binary):
    out = subprocess.run([binary, "serve", "--help"], capture_output=True).stdout.decode()
    return set(re.findall(r"--[a-z][a-z0-9-]*", out))


def run_one(ctx, binary, after, attack, known, root):
    number, name, function, required, needs_root = attack
    if needs_root and not root:
        return {"na": "skipped: needs root"}
    if after:
        missing = [f for f in required if f not in known]
        if missing:
            return {"na": "n/a: flag missing (%s)" % " ".join(sorted(set(missing)))}
    r = Run(ctx, binary, after)
    try:
        return function(r)
    except Exception as e:  # a row that failed says why; the others still run
        return {"na": "failed: %s" % e}
    finally:
        r.close()


def pair(before, after, key):
    """One cell: `before → after`, or only after without a baseline; a row that did not run
    (needs root, flag missing) shows its reason once, in the figure column."""

    def one(c):
        if "na" in c:
            return c["na"] if key == "what" else "n/a"
        return c[key]

    if before is None:
        return one(after)
    if key == "what":
        if "na" in before and before.get("na") == after.get("na"):
            return before["na"]
        return "before: %s<br>after: %s" % (one(before), one(after))
    return "%s → %s" % (one(before), one(after))


def main():
    parser = argparse.ArgumentParser(description="Replays issue 18's attacks on loopback.")
    parser.add_argument("--after", required=True, help="the echoloop binary under test")
    parser.add_argument("--after-label", help="how the header names the after binary")
    parser.add_argument("--baseline", help="an old echoloop: the before column")
    parser.add_argument("--only", help="attacks to run, by number: 1,2,5 or 2a,4b")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    root = os.geteuid() == 0 and can_forge()
    known = flags_of(args.after)
    trusted_none = ["--trusted", "none"] if "--trusted" in known else []
    only = args.only.split(",") if args.only else None
    attacks = [a for a in ATTACKS if not only or a[0] in only or a[0].rstrip("abc") in only]

    print("# echoloop attacks replayed (issue 18), %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("# after:  %s serve ... %s" % (args.after_label or args.after, " ".join(trusted_none) or "(no --trusted: loopback is trusted!)"))
    print("# before: %s serve ... (no new flag)" % (args.baseline or "(none given)"))
    print("# CPU: server seconds during the attack; RSS: server peak (VmHWM) MiB; p99: another client's")
    print("# round trip on the same server during the attack, ms (a failed one counts %d ms)" % (PROBE_TIMEOUT * 1000))
    for attack in attacks:
        print("# %s: serve %s; %s" % (attack[0], SERVER_FLAGS[attack[0]], WHAT_IS_MEASURED[attack[0]]))
    print("# priority: nice %d (scripts/attack.sh raises it as root, on a machine shared with builds)"
          % os.nice(0))
    print("# load average at start: %.1f %.1f %.1f (%d CPUs)" % (*os.getloadavg(), os.cpu_count()))
    sys.stdout.flush()

    log_dir = tempfile.mkdtemp(prefix="echoloop-attack-")
    ctx = Context(log_dir, trusted_none)
    rows = []
    try:
        for attack in attacks:
            print("running %s %s" % (attack[0], attack[1]), file=sys.stderr, flush=True)
            before = None
            if args.baseline:
                before = run_one(ctx, args.baseline, False, attack, known, root)
            after = run_one(ctx, args.after, True, attack, known, root)
            rows.append((attack, before, after))
    finally:
        stop_all()
        shutil.rmtree(log_dir, ignore_errors=True)

    print("# load average at end: %.1f %.1f %.1f" % os.getloadavg())
    arrow = "before → after" if args.baseline else "after"
    print()
    print("| attack | CPU s (%s) | peak RSS MiB | other client p99 ms | figure |" % arrow)
    print("|---|---|---|---|---|")
    for (number, name, *_), before, after in rows:
        print("| %s. %s | %s | %s | %s | %s |" % (
            number, name, pair(before, after, "cpu"), pair(before, after, "rss"),
            pair(before, after, "p99"), pair(before, after, "what")))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        probe_main(sys.argv[2], sys.argv[3])
    else:
        main()
