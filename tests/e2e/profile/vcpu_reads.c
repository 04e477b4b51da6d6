/* Prints what CPUID (a leaf set whole, a leaf set per subleaf), RDTSC and
 * RDTSCP read, for `popek run --vcpu` with tests/e2e/profile/virtual.vcpu. The
 * leaves are in the range no processor defines (0x4fff0000), so natively
 * they read whatever the host makes of them and only the profile's values
 * are known. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

static void cpuid(uint32_t leaf, uint32_t subleaf)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(leaf), "c"(subleaf));
    printf("cpuid 0x%x.%u: %08x %08x %08x %08x\n", leaf, subleaf, a, b, c, d);
}

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static uint64_t rdtscp(uint32_t *aux)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(*aux));
    return (uint64_t)hi << 32 | lo;
}

int main(void)
{
    cpuid(0x4fff0000, 0);
    cpuid(0x4fff0000, 9);
    cpuid(0x4fff0001, 0);
    cpuid(0x4fff0001, 1);
    cpuid(0x4fff0001, 2); /* no entry for it: the leaf's own */
    uint32_t aux;
    uint64_t t1 = rdtsc(), t2 = rdtscp(&aux), t3 = rdtsc();
    /* counting from 2^40, at the host's rate: well under 2^40 more in a test */
    printf("rdtsc from 2^40: %s\n", t1 >= (1ull << 40) && t1 < (2ull << 40) ? "yes" : "no");
    printf("rdtsc, rdtscp, rdtsc in order: %s\n", t1 <= t2 && t2 <= t3 ? "yes" : "no");
    printf("rdtscp aux: %u\n", aux);
    return 0;
}
