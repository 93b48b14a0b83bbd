/*
 * c_epoll_echo.c - echoloop's C reference peer: a single-threaded epoll echo server, the way it is
 * usually written in C, for scripts/bench.sh, pairs.sh and profile.sh to measure echoloop against.
 *
 * One thread, one epoll instance, non-blocking sockets, edge-triggered:
 *   - the listener: accept4() until EAGAIN, TCP_NODELAY on each connection;
 *   - a connection: read() into its 16 KiB buffer, write() it back at once; until EAGAIN.
 *     What the kernel refuses stays in the buffer, reading stops (the client's own TCP window
 *     then slows it down), EPOLLOUT is asked for, and only while bytes are refused.
 *   - read() == 0 with nothing owed, or an error: close.
 *
 * usage:  c_epoll_echo PORT        (0 picks a free port; 127.0.0.1, backlog 4096)
 * stdout: listening tcp 127.0.0.1:PORT
 * build:  cc -O2 -Wall -o c_epoll_echo c_epoll_echo.c        stop: SIGTERM
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFFER_BYTES 16384
#define MAX_EVENTS 256

struct conn {
    int fd;
    int wants_out;      /* EPOLLOUT registered: bytes are waiting in buf[start..end] */
    size_t start, end;
    char buf[BUFFER_BYTES];
};

static int epfd;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void close_conn(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c);
}

/* Registers EPOLLOUT only while bytes are owed. */
static int want_out(struct conn *c, int on) {
    if (c->wants_out == on)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -1;
    c->wants_out = on;
    return 0;
}

/* Writes what is owed, then reads and echoes until the kernel says EAGAIN. -1: close. */
static int pump(struct conn *c) {
    for (;;) {
        while (c->end > c->start) {
            ssize_t n = write(c->fd, c->buf + c->start, c->end - c->start);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return want_out(c, 1);
                return -1;
            }
            c->start += (size_t)n;
        }
        c->start = c->end = 0;
        ssize_t n = read(c->fd, c->buf, sizeof c->buf);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return want_out(c, 0);
            return -1;
        }
        c->end = (size_t)n;
    }
}

static void accept_all(int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("accept4"); /* EMFILE and the like: try again at the next event */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close_conn(c);
            continue;
        }
        /* Bytes may have arrived before the registration: their edge is already gone. */
        if (pump(c) < 0)
            close_conn(c);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: c_epoll_echo PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0)
        die("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(listener, 4096) < 0)
        die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(listener, (struct sockaddr *)&addr, &len) < 0)
        die("getsockname");
    printf("listening tcp 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &ev) < 0)
        die("epoll_ctl");

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL)
                accept_all(listener);
            else if (pump(c) < 0)
                close_conn(c);
        }
    }
}
