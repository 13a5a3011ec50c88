/*
 * http: a tiny HTTP/1.1 server answering `GET /` with a small HTML page.
 *
 * With `prot = "tls"` in Donjon.toml the Keep speaks TLS 1.3 on the wire, so curl and
 * browsers reach it over https; this code only ever sees plain HTTP. One thread, poll(),
 * non-blocking clients, one request per connection (`Connection: close`).
 *
 * Limits: a request head larger than REQ_MAX bytes is answered 431 and the connection closed;
 * at most MAX_CLIENTS connections at once (others wait in the kernel's backlog).
 *
 * Environment: HTTP_FD_NAME (default "web") names the listening fd; HTTP_EXIT_AFTER=N makes
 * the server exit 0 after N connections (for tests).
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
#define REQ_MAX 8192
#define RESP_MAX 2048

static const char PAGE[] =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>Donjon</title></head>\n"
    "<body><h1>Hello from a Donjon Keep</h1>\n"
    "<p>This page was served by a WebAssembly workload; the Keep terminated TLS.</p>\n"
    "</body></html>\n";

struct client {
    int fd; /* -1 when free */
    size_t req_len;
    char req[REQ_MAX + 1];
    size_t resp_len;
    size_t resp_off;
    char resp[RESP_MAX];
};

static struct client clients[MAX_CLIENTS];
static unsigned long requests;

/* Build the response for the request head in c->req (NUL-terminated). */
static void respond(struct client *c, int too_large) {
    const char *status = "200 OK";
    const char *body = PAGE;
    int head_only = 0;
    if (too_large) {
        status = "431 Request Header Fields Too Large";
        body = "request head too large\n";
    } else {
        char *line_end = strstr(c->req, "\r\n");
        if (line_end != NULL) {
            *line_end = '\0';
        }
        /* Request line: METHOD SP TARGET SP VERSION (RFC 9112 section 3). */
        char *method = c->req;
        char *target = strchr(method, ' ');
        char *version = target ? strchr(target + 1, ' ') : NULL;
        if (target == NULL || version == NULL || strncmp(version + 1, "HTTP/1.", 7) != 0) {
            status = "400 Bad Request";
            body = "bad request\n";
        } else {
            *target++ = '\0';
            *version = '\0';
            int is_get = strcmp(method, "GET") == 0;
            int is_head = strcmp(method, "HEAD") == 0;
            if (!is_get && !is_head) {
                status = "405 Method Not Allowed";
                body = "only GET and HEAD\n";
            } else if (strcmp(target, "/") != 0 && strcmp(target, "/index.html") != 0) {
                status = "404 Not Found";
                body = "not found\n";
            }
            head_only = is_head;
        }
    }
    requests++;
    size_t body_len = strlen(body);
    int n = snprintf(c->resp, sizeof c->resp,
                     "HTTP/1.1 %s\r\n"
                     "Content-Type: text/html; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Connection: close\r\n"
                     "Server: donjon-example\r\n"
                     "\r\n"
                     "%s",
                     status, body_len, head_only ? "" : body);
    c->resp_len = (n < 0 || (size_t)n >= sizeof c->resp) ? 0 : (size_t)n;
    c->resp_off = 0;
}

/* Returns 0 to keep the client, -1 when the connection is finished. */
static int serve(struct client *c) {
    while (c->resp_len == 0) {
        ssize_t n = recv(c->fd, c->req + c->req_len, REQ_MAX - c->req_len, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (n == 0) {
            return -1; /* closed before sending a whole request head */
        }
        c->req_len += (size_t)n;
        c->req[c->req_len] = '\0';
        if (strstr(c->req, "\r\n\r\n") != NULL) {
            respond(c, 0);
        } else if (c->req_len == REQ_MAX) {
            respond(c, 1);
        } else {
            continue; /* the request head is not complete yet */
        }
        if (c->resp_len == 0) {
            return -1; /* the response did not fit RESP_MAX: cannot happen with the bodies above */
        }
    }
    while (c->resp_off < c->resp_len) {
        ssize_t n = send(c->fd, c->resp + c->resp_off, c->resp_len - c->resp_off, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        c->resp_off += (size_t)n;
    }
    shutdown(c->fd, SHUT_WR); /* end of response: TLS close_notify, then TCP FIN */
    return -1;
}

int main(void) {
    const char *name;
    int listen_fd = listen_fd_named("http", "HTTP_FD_NAME", "web", &name);
    if (listen_fd < 0) {
        return 1;
    }
    long exit_after = env_count("HTTP_EXIT_AFTER");
    long served = 0;
    for (int i = 0; i < MAX_CLIENTS; i++) {
        clients[i].fd = -1;
    }
    fprintf(stderr, "http: serving on fd %d (\"%s\")\n", listen_fd, name);

    struct pollfd fds[MAX_CLIENTS + 1];
    int slot_of[MAX_CLIENTS + 1];
    for (;;) {
        int nfds = 0;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0) {
                continue;
            }
            fds[nfds].fd = clients[i].fd;
            fds[nfds].events = clients[i].resp_len > 0 ? POLLOUT : POLLIN;
            fds[nfds].revents = 0;
            slot_of[nfds++] = i;
        }
        int listen_index = -1;
        if (nfds < MAX_CLIENTS) {
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
            fprintf(stderr, "http: poll: %s\n", strerror(errno));
            return 2;
        }
        for (int k = 0; k < nfds; k++) {
            if (k == listen_index || fds[k].revents == 0) {
                continue;
            }
            struct client *c = &clients[slot_of[k]];
            if ((fds[k].revents & POLLNVAL) != 0 || serve(c) < 0) {
                close(c->fd);
                c->fd = -1;
                served++;
            }
        }
        if (listen_index >= 0 && (fds[listen_index].revents & POLLIN) != 0) {
            int fd = accept_client("http", listen_fd);
            if (fd >= 0) {
                for (int i = 0; i < MAX_CLIENTS; i++) {
                    if (clients[i].fd < 0) {
                        clients[i].fd = fd;
                        clients[i].req_len = clients[i].resp_len = clients[i].resp_off = 0;
                        break;
                    }
                }
            }
        } else if (listen_index >= 0 && (fds[listen_index].revents & (POLLERR | POLLNVAL)) != 0) {
            fprintf(stderr, "http: the listening socket failed\n");
            return 2;
        }
        if (exit_after > 0 && served >= exit_after) {
            fprintf(stderr, "http: served %ld connections (%lu requests), exiting\n", served, requests);
            return 0;
        }
    }
}
