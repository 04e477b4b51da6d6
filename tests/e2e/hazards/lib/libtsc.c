#include <stdint.h>
__attribute__((noinline)) uint64_t lib_tsc(uint64_t x) {
    uint32_t lo, hi;
    x = x * 3 + 1;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return x + ((uint64_t)hi << 32 | lo) % 2;
}
unsigned lib_cpuid(unsigned leaf) {
    unsigned a, b, c, d;
    leaf ^= 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(0));
    return a + (b != 0);
}
