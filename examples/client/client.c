/*
 * client: sends one HTTP/1.1 request over a pre-opened outgoing socket and prints the answer.
 *
 * The Keep opens the connection (Donjon.toml `kind = "connect"`, whose name defaults to its
 * host) before the workload starts; with `prot = "tls"` it also verifies the server against
 * the configured trust anchors and host name. This code only sends and receives plain bytes.
 *
 * Usage: main.wasm [PATH]   (default "/"). CLIENT_FD_NAME names the socket (default: the
 * first fd after stdin, stdout and stderr); the Host header is that name.
 * Exit codes: 0 answer printed, 1 no such socket, 2 I/O error or empty answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ANSWER (1L << 20) /* print at most 1 MiB of answer */

/* Sets *name_out to a malloc'd copy of fd `index`'s name, or finds `want` and returns its fd. */
static int find_fd(const char *want, long index_wanted, char **name_out) {
    const char *names = getenv("FD_NAMES");
    const char *count_text = getenv("FD_COUNT");
    if (names == NULL || count_text == NULL) {
        return -1;
    }
    long count = strtol(count_text, NULL, 10);
    long index = 0;
    const char *start = names;
    for (;;) {
        const char *end = strchr(start, ':');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        int match = want ? (len == strlen(want) && memcmp(start, want, len) == 0) : index == index_wanted;
        if (index < count && match) {
            *name_out = strndup(start, len);
            return *name_out ? (int)index : -1;
        }
        if (end == NULL) {
            return -1;
        }
        start = end + 1;
        index++;
    }
}

static int send_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, data, len, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/";
    const char *want = getenv("CLIENT_FD_NAME");
    if (want != NULL && *want == '\0') {
        want = NULL;
    }
    char *host = NULL;
    int fd = find_fd(want, 3, &host);
    if (fd < 0) {
        fprintf(stderr, "client: no pre-opened socket %s%s%s in FD_NAMES\n", want ? "\"" : "at fd 3",
                want ? want : "", want ? "\"" : "");
        return 1;
    }
    if (strchr(path, '\r') != NULL || strchr(path, '\n') != NULL || strchr(path, ' ') != NULL) {
        fprintf(stderr, "client: the path may not contain spaces or line breaks\n");
        return 2;
    }
    size_t request_len = strlen(path) + strlen(host) + 128;
    char *request = malloc(request_len);
    if (request == NULL) {
        return 2;
    }
    int n = snprintf(request, request_len,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: donjon-example-client\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     path, host);
    if (n < 0 || (size_t)n >= request_len) {
        return 2;
    }
    if (send_all(fd, request, (size_t)n) < 0) {
        fprintf(stderr, "client: send to %s: %s\n", host, strerror(errno));
        return 2;
    }
    long total = 0;
    char buf[16384];
    for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* Only a non-blocking fd says this; the Keep hands out blocking ones. */
                fprintf(stderr, "client: the socket is non-blocking\n");
                return 2;
            }
            fprintf(stderr, "client: recv from %s: %s\n", host, strerror(errno));
            return 2;
        }
        if (got == 0) {
            break;
        }
        size_t keep = (size_t)got;
        if (total + (long)keep > MAX_ANSWER) {
            keep = (size_t)(MAX_ANSWER - total);
        }
        if (keep > 0 && fwrite(buf, 1, keep, stdout) != keep) {
            return 2;
        }
        total += got;
        if (total >= MAX_ANSWER) {
            fprintf(stderr, "client: answer truncated at %ld bytes\n", (long)MAX_ANSWER);
            break;
        }
    }
    fflush(stdout);
    shutdown(fd, SHUT_RDWR);
    close(fd);
    fprintf(stderr, "client: %ld bytes from %s\n", total, host);
    free(request);
    free(host);
    return total > 0 ? 0 : 2;
}
