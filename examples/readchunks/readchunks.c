/* readchunks: file-I/O benchmark. Reads PATH with read() in 4 KiB chunks and prints the byte
 * count and a sum of the bytes. Usage: readchunks PATH */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: readchunks PATH\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    static unsigned char buf[4096];
    uint64_t total = 0, sum = 0, reads = 0;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) {
        reads++;
        total += (uint64_t)got;
        for (ssize_t i = 0; i < got; i++) sum += buf[i];
    }
    close(fd);
    if (got < 0) {
        perror("read");
        return 1;
    }
    printf("bytes=%llu reads=%llu sum=%llu\n", (unsigned long long)total, (unsigned long long)reads,
           (unsigned long long)sum);
    return 0;
}
