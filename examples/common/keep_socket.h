/*
 * keep_socket.h: what the socket examples (echo, http, secretsha) share.
 *
 * The Keep pre-opens the sockets a workload's Donjon.toml declares before the guest starts:
 * `[[files]]` entry i is fd i, and the guest learns their names from FD_NAMES (colon-separated,
 * entry i names fd i) and their number from FD_COUNT, as Enarx's examples do. With
 * `prot = "tls"` the Keep terminates TLS: the guest sees plain bytes.
 *
 * Everything here is `static inline`, so an example that does not use a function gets no
 * warning (the examples build with -Wall -Wextra -Werror) and no code for it.
 */
#ifndef DONJON_EXAMPLES_KEEP_SOCKET_H
#define DONJON_EXAMPLES_KEEP_SOCKET_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The fd whose FD_NAMES entry is `want`, or -1. */
static inline int find_fd(const char *want) {
    const char *names = getenv("FD_NAMES");
    const char *count_text = getenv("FD_COUNT");
    if (names == NULL || count_text == NULL) {
        return -1;
    }
    long count = strtol(count_text, NULL, 10);
    size_t want_len = strlen(want);
    long index = 0;
    const char *start = names;
    for (;;) {
        const char *end = strchr(start, ':');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        if (index < count && len == want_len && memcmp(start, want, len) == 0) {
            return (int)index;
        }
        if (end == NULL) {
            return -1;
        }
        start = end + 1;
        index++;
    }
}

/*
 * The listening socket named by the environment variable `env` (`fallback` when it is unset
 * or empty); its name in *name_out. -1, said on stderr as `prog: ...`, when there is none.
 */
static inline int listen_fd_named(const char *prog, const char *env, const char *fallback,
                                  const char **name_out) {
    const char *name = env ? getenv(env) : NULL;
    if (name == NULL || *name == '\0') {
        name = fallback;
    }
    *name_out = name;
    int fd = find_fd(name);
    if (fd < 0) {
        fprintf(stderr, "%s: no pre-opened socket named \"%s\" in FD_NAMES\n", prog, name);
    }
    return fd;
}

/* The number in the environment variable `env` (a test's "exit after N connections"), 0 unset. */
static inline long env_count(const char *env) {
    const char *text = getenv(env);
    return text ? strtol(text, NULL, 10) : 0;
}

/*
 * One waiting connection, non-blocking (WASI sock_accept with FDFLAGS_NONBLOCK), or -1 when
 * none could be taken; an error other than "none waiting" or "gone already" is said on stderr.
 */
static inline int accept_client(const char *prog, int listen_fd) {
    struct sockaddr_storage addr;
    socklen_t addr_len = sizeof addr;
    int fd = accept4(listen_fd, (struct sockaddr *)&addr, &addr_len, SOCK_NONBLOCK);
    if (fd < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        fprintf(stderr, "%s: accept: %s\n", prog, strerror(errno));
    }
    return fd;
}

/* All of `data` to a non-blocking socket, waiting (a second at a time) while it is full; 0 or -1. */
static inline int send_all(int fd, const char *data, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                poll(&p, 1, 1000);
                continue;
            }
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

#endif
