/* filereader: reads a file (a path inside a pre-opened directory) and prints its size and checksum.
 * The checksum is FNV-1a 64 over the bytes, so a test can compute the same value in Python. */
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: filereader PATH\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static unsigned char buf[65536];
    uint64_t hash = 0xcbf29ce484222325ULL;
    uint64_t size = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < n; i++) {
            hash = (hash ^ buf[i]) * 0x100000001b3ULL;
        }
        size += n;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        perror(argv[1]);
        return 1;
    }
    printf("size=%llu fnv1a64=%016llx\n", (unsigned long long)size, (unsigned long long)hash);
    return 0;
}
