/* grow: takes memory 1 MiB at a time with memory.grow, writing to every page so the host really
 * commits it, until memory.grow fails (returns -1, what a [limits] memory bound does) or MAX_MIB
 * (argv[1], default 4096) is reached. Prints "grew N MiB, memory.grow failed" or
 * "grew N MiB, reached the cap". With GROW_WAIT set it then reads stdin to end of file before
 * exiting, so a test can measure the process while it holds everything it got. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define PAGE 65536u
#define MIB_PAGES 16u

int main(int argc, char **argv) {
    unsigned long cap = argc > 1 ? strtoul(argv[1], NULL, 10) : 4096;
    unsigned long grown = 0;
    int failed = 0;
    while (grown < cap) {
        /* __builtin_wasm_memory_grow: the memory.grow instruction on memory 0. */
        size_t old = __builtin_wasm_memory_grow(0, MIB_PAGES);
        if (old == (size_t)-1) {
            failed = 1;
            break;
        }
        volatile unsigned char *base = (volatile unsigned char *)(uintptr_t)(old * PAGE);
        for (unsigned i = 0; i < MIB_PAGES * PAGE; i += 4096) base[i] = (unsigned char)(i | 1);
        grown++;
    }
    printf("grew %lu MiB, %s\n", grown, failed ? "memory.grow failed" : "reached the cap");
    fflush(stdout);
    if (getenv("GROW_WAIT")) {
        char buf[256];
        while (read(0, buf, sizeof buf) > 0) {
        }
    }
    return failed ? 0 : 3;
}
