/* compute: a CPU-bound benchmark with no host calls in its loop (xorshift64* mixing plus a
 * small sieve), printing one checksum at the end. ITERATIONS comes from argv[1] (default 20M). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t mix(uint64_t rounds) {
    uint64_t x = 0x9e3779b97f4a7c15ULL, acc = 0;
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        acc += (x * 0x2545f4914f6cdd1dULL) >> (i & 31);
    }
    return acc;
}

static unsigned primes_below(unsigned limit) {
    static unsigned char composite[1 << 20];
    unsigned count = 0;
    if (limit > sizeof composite) limit = sizeof composite;
    for (unsigned i = 2; i < limit; i++) {
        if (composite[i]) continue;
        count++;
        for (uint64_t j = (uint64_t)i * i; j < limit; j += i) composite[j] = 1;
    }
    return count;
}

int main(int argc, char **argv) {
    uint64_t rounds = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000000ULL;
    uint64_t acc = mix(rounds);
    unsigned primes = primes_below(1u << 20);
    printf("rounds=%llu checksum=%016llx primes=%u\n", (unsigned long long)rounds, (unsigned long long)acc, primes);
    return 0;
}
