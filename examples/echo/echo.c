/*
 * echo: a TCP/TLS echo server for many concurrent clients, in one thread, with poll().
 *
 * The listening socket is pre-opened by the Keep (Donjon.toml `kind = "listen"`); the guest
 * finds it by name through FD_NAMES (colon-separated, entry i names fd i) and FD_COUNT, as
 * Enarx's examples do. With `prot = "tls"` the Keep terminates TLS: this code sees plain bytes.
 *
 * Each client has one bounded buffer: the server reads up to BUF_SIZE bytes, writes them all
 * back, and only then reads again, so a client that sends without reading cannot make the
 * server buffer more than BUF_SIZE bytes for it. Clients are non-blocking (accept4 with
 * SOCK_NONBLOCK: WASI sock_accept with FDFLAGS_NONBLOCK); one slow client stalls nobody.
 *
 * Environment: ECHO_FD_NAME (default "ingest") names the listening fd; ECHO_EXIT_AFTER=N
 * makes the server exit 0 after N connections have been served and closed (for tests).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/keep_socket.h"

#define MAX_CLIENTS 64
#define BUF_SIZE 65536

struct client {
    int fd;       /* -1 when the slot is free */
    size_t len;   /* bytes in buf */
    size_t off;   /* bytes of buf already echoed */
    unsigned char buf[BUF_SIZE];
};

static struct client clients[MAX_CLIENTS];

static void drop(struct client *c) {
    close(c->fd);
    c->fd = -1;
    c->len = c->off = 0;
}

/* Move bytes for one client until it would block. Returns 0 to keep it, -1 when it is done. */
static int serve(struct client *c) {
    for (;;) {
        if (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    return 0;
                }
                if (errno == EINTR) {
                    continue;
                }
                fprintf(stderr, "echo: send on fd %d: %s\n", c->fd, strerror(errno));
                return -1;
            }
            c->off += (size_t)n;
            continue;
        }
        c->len = c->off = 0;
        ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            if (errno == EINTR) {
                continue;
            }
            if (errno != ECONNRESET) {
                fprintf(stderr, "echo: recv on fd %d: %s\n", c->fd, strerror(errno));
            }
            return -1;
        }
        if (n == 0) {
            return -1; /* the client closed its side and everything it sent was echoed */
        }
        c->len = (size_t)n;
    }
}

int main(void) {
    const char *name;
    int listen_fd = listen_fd_named("echo", "ECHO_FD_NAME", "ingest", &name);
    if (listen_fd < 0) {
        return 1;
    }
    long exit_after = env_count("ECHO_EXIT_AFTER");
    long served = 0;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        clients[i].fd = -1;
    }
    fprintf(stderr, "echo: serving on fd %d (\"%s\")\n", listen_fd, name);

    struct pollfd fds[MAX_CLIENTS + 1];
    int slot_of[MAX_CLIENTS + 1];
    for (;;) {
        int nfds = 0;
        int active = 0;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0) {
                continue;
            }
            active++;
            fds[nfds].fd = clients[i].fd;
            fds[nfds].events = clients[i].off < clients[i].len ? POLLOUT : POLLIN;
            fds[nfds].revents = 0;
            slot_of[nfds++] = i;
        }
        int listen_index = -1;
        if (active < MAX_CLIENTS) { /* when full, leave new clients in the kernel's backlog */
            listen_index = nfds;
            fds[nfds].fd = listen_fd;
            fds[nfds].events = POLLIN;
            fds[nfds].revents = 0;
            slot_of[nfds++] = -1;
        }
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "echo: poll: %s\n", strerror(errno));
            return 2;
        }
        for (int k = 0; k < nfds; k++) {
            if (k == listen_index || fds[k].revents == 0) {
                continue;
            }
            struct client *c = &clients[slot_of[k]];
            if ((fds[k].revents & POLLNVAL) != 0 || serve(c) < 0) {
                drop(c);
                served++;
            }
        }
        if (listen_index >= 0 && (fds[listen_index].revents & POLLIN) != 0) {
            int fd = accept_client("echo", listen_fd);
            if (fd >= 0) {
                for (int i = 0; i < MAX_CLIENTS; i++) {
                    if (clients[i].fd < 0) {
                        clients[i].fd = fd;
                        clients[i].len = clients[i].off = 0;
                        break;
                    }
                }
            }
        } else if (listen_index >= 0 && (fds[listen_index].revents & (POLLERR | POLLNVAL)) != 0) {
            fprintf(stderr, "echo: the listening socket failed\n");
            return 2;
        }
        if (exit_after > 0 && served >= exit_after) {
            fprintf(stderr, "echo: served %ld connections, exiting\n", served);
            return 0;
        }
    }
}
