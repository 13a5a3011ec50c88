/* writes: file-I/O benchmark. Writes COUNT small records (one write() each, no stdio buffering)
 * to PATH, then reads the file back and checks its size. Usage: writes PATH [COUNT] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: writes PATH [COUNT]\n");
        return 2;
    }
    long count = argc > 2 ? atol(argv[2]) : 100000;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    char record[32];
    long total = 0;
    for (long i = 0; i < count; i++) {
        int n = snprintf(record, sizeof record, "record %08ld\n", i);
        if (write(fd, record, (size_t)n) != n) {
            perror("write");
            return 1;
        }
        total += n;
    }
    close(fd);
    fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    static char buf[4096];
    long back = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) back += got;
    close(fd);
    printf("writes=%ld bytes=%ld read_back=%ld\n", count, total, back);
    return back == total ? 0 : 1;
}
