/*
 * netprobe: walks one connection through the WASI socket calls and prints what each returned.
 *
 * Used by tests/net/test_net_probe.py, which plays the peer. fd 3 is a pre-opened listening
 * socket (tcp or tls: the guest cannot tell). Each line on stdout is "step=result", where a
 * result is a value or an errno name, so the test asserts the WASI semantics one call at a time.
 * Rebuild: python -m ziglang cc -target wasm32-wasi -O2 -o netprobe.wasm netprobe.c
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

static const char *err(int e) {
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOTCONN: return "ENOTCONN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case EINVAL: return "EINVAL";
    default: return strerror(e);
    }
}

static void show(const char *step, long value) {
    if (value < 0) {
        printf("%s=%s\n", step, err(errno));
    } else {
        printf("%s=%ld\n", step, value);
    }
    fflush(stdout);
}

static int filetype(int fd) {
    __wasi_fdstat_t st;
    if (__wasi_fd_fdstat_get(fd, &st) != 0) {
        return -1;
    }
    return st.fs_filetype;
}

static int nonblocking(int fd) {
    __wasi_fdstat_t st;
    if (__wasi_fd_fdstat_get(fd, &st) != 0) {
        return -1;
    }
    return (st.fs_flags & __WASI_FDFLAGS_NONBLOCK) != 0;
}

int main(void) {
    char buf[64];
    const int lfd = 3;
    show("listen_filetype", filetype(lfd));
    show("recv_stdout", recv(1, buf, sizeof buf, 0));
    show("recv_listener", recv(lfd, buf, sizeof buf, 0));
    show("read_listener", read(lfd, buf, sizeof buf));
    show("setfl_nonblock", fcntl(lfd, F_SETFL, O_NONBLOCK));
    show("listen_nonblocking", nonblocking(lfd));
    show("accept_nonblocking", accept(lfd, NULL, NULL));
    show("setfl_blocking", fcntl(lfd, F_SETFL, 0));
    fprintf(stderr, "probe: accepting\n");
    int c = accept(lfd, NULL, NULL);
    show("accept", c >= 0 ? 0 : -1);
    if (c < 0) {
        return 1;
    }
    show("conn_filetype", filetype(c));
    show("conn_nonblocking", nonblocking(c));
    ssize_t n = recv(c, buf, 5, MSG_PEEK);
    show("peek", n);
    printf("peek_data=%.*s\n", (int)(n > 0 ? n : 0), buf);
    n = recv(c, buf, 5, 0);
    show("recv", n);
    printf("recv_data=%.*s\n", (int)(n > 0 ? n : 0), buf);
    n = recv(c, buf, 10, MSG_WAITALL);
    show("waitall", n);
    printf("waitall_data=%.*s\n", (int)(n > 0 ? n : 0), buf);
    show("setfl_conn_nonblock", fcntl(c, F_SETFL, O_NONBLOCK));
    show("recv_nonblocking", recv(c, buf, sizeof buf, 0));
    struct pollfd p = {.fd = c, .events = POLLIN};
    show("poll_timeout", poll(&p, 1, 50));
    show("send", send(c, "ack", 3, 0));
    p.revents = 0;
    int r = poll(&p, 1, 5000);
    show("poll_in", r);
    show("poll_in_revents_pollin", (p.revents & POLLIN) != 0);
    n = read(c, buf, sizeof buf); /* fd_read on a socket is sock_recv */
    show("fd_read", n);
    printf("fd_read_data=%.*s\n", (int)(n > 0 ? n : 0), buf);
    show("fd_write", write(c, "w", 1));
    show("shutdown_bad", shutdown(c, 99));
    show("shutdown_wr", shutdown(c, SHUT_WR));
    p.revents = 0;
    show("poll_eof", poll(&p, 1, 5000));
    show("recv_eof", recv(c, buf, sizeof buf, 0));
    int tries = 0;
    for (; tries < 200; tries++) { /* the peer is gone: sending fails, sooner or later */
        ssize_t s = send(c, "after", 5, 0);
        if (s < 0 && errno != EAGAIN) {
            break;
        }
        if (s < 0) {
            poll(&p, 1, 10);
        }
        usleep(5000);
    }
    printf("send_after_close=%s\n", tries < 200 ? err(errno) : "no error");
    show("close", close(c));
    show("recv_closed", recv(c, buf, sizeof buf, 0));
    show("accept_on_stream", accept(1, NULL, NULL));
    return 0;
}
