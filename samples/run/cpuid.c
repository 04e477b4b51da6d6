/* samples/run/cpuid.c — CPUID, RDTSC and RDTSCP, which `popek run --set
 * extended` patches and emulates. The output depends on the machine (the
 * vendor, the family) but not on the run: no TSC value, no RDTSCP aux
 * (the CPU number) is printed. The test compares a native run with one
 * under popek on the same machine, so there is no .expected file.
 *
 * CPUID leaf 1's signature, decoded as the SDM (Vol. 2A, CPUID, EAX=01H)
 * says: the extended family is added only when the base family is 0xf,
 * the extended model is prepended only for families 6 and 0xf. */
#include <stdint.h>
#include <string.h>

#include "sample.h"

struct regs {
    uint32_t eax, ebx, ecx, edx;
};

static struct regs cpuid(uint32_t leaf)
{
    struct regs r;
    __asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                     : "a"(leaf), "c"(0));
    return r;
}

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

/* RDTSCP also loads IA32_TSC_AUX into ECX: on Linux, the CPU and node
 * number, which this program never prints. */
static uint64_t rdtscp(void)
{
    uint32_t lo, hi, aux;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
    (void)aux;
    return (uint64_t)hi << 32 | lo;
}

#define CPUID_EXT_BASE   0x80000000u
#define CPUID_EXT_RDTSCP (1u << 27)     /* leaf 0x80000001, EDX */

int main(void)
{
    struct regs r = cpuid(0);
    char vendor[13];
    memcpy(vendor, &r.ebx, 4);
    memcpy(vendor + 4, &r.edx, 4);
    memcpy(vendor + 8, &r.ecx, 4);
    vendor[12] = '\0';
    printf("cpuid 0: vendor=%s\n", vendor);

    r = cpuid(1);
    unsigned stepping = r.eax & 0xf, model = (r.eax >> 4) & 0xf;
    unsigned family = (r.eax >> 8) & 0xf;
    if (family == 0xf || family == 6)
        model |= ((r.eax >> 16) & 0xf) << 4;
    if (family == 0xf)
        family += (r.eax >> 20) & 0xff;
    printf("cpuid 1: family=0x%x model=0x%x stepping=0x%x\n", family, model,
           stepping);

    uint64_t t1 = rdtsc(), t2 = rdtsc();
    printf("rdtsc monotonic: %s\n", t2 >= t1 ? "yes" : "no");
    CHECK(t2 >= t1, "rdtsc went backwards");

    int has_rdtscp = cpuid(CPUID_EXT_BASE).eax >= CPUID_EXT_BASE + 1 &&
                     (cpuid(CPUID_EXT_BASE + 1).edx & CPUID_EXT_RDTSCP);
    if (has_rdtscp) {
        uint64_t t3 = rdtscp();
        printf("rdtscp: yes\n");
        CHECK(t3 >= t2, "rdtscp is behind rdtsc");
    } else {
        printf("rdtscp: no-cpu\n");
    }
    return sample_status();
}
