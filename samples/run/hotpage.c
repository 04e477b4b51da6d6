/* samples/run/hotpage.c — code and hot data on one page. One RWX page
 * holds a small function with a PUSHF and, 2 KiB further, a counter that
 * ordinary compiled code increments 200000 times, calling the function
 * every 1000 increments.
 *
 * A monitor that write-protects the pages it patched takes a write fault
 * on every increment: each one must be let through (the counter ends at
 * 200000) without losing the patch (every call still returns IF=1 from an
 * emulated PUSHF), and without costing so much that the program crawls. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "sample.h"

#define PAGE_SIZE      4096
#define COUNTER_OFFSET 2048
#define ITERATIONS     200000
#define CALL_EVERY     1000

static const uint8_t code_pushf[] = {
    0x9c,                               /* pushfq               */
    0x58,                               /* pop %rax             */
    0xc3,                               /* ret                  */
};

int main(void)
{
    uint8_t *page = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    memcpy(page, code_pushf, sizeof code_pushf);
    uint64_t (*fn)(void) = (uint64_t (*)(void))(uintptr_t)page;
    /* volatile: one store to the page per iteration, as written. */
    volatile uint64_t *counter = (volatile uint64_t *)(page + COUNTER_OFFSET);

    unsigned calls = 0, bad = 0;
    uint64_t last = 0;
    for (unsigned i = 0; i < ITERATIONS; i++) {
        (*counter)++;
        if ((i + 1) % CALL_EVERY == 0) {
            last = fn();
            calls++;
            if (flags_if(last) != 1 || flags_iopl(last) != 0)
                bad++;
        }
    }

    printf("hotpage: counter=%llu\n", (unsigned long long)*counter);
    printf("hotpage: calls=%u, pushf IF=%u IOPL=%u, wrong flags in %u calls\n",
           calls, flags_if(last), flags_iopl(last), bad);
    CHECK(*counter == ITERATIONS, "counter %llu", (unsigned long long)*counter);
    CHECK(calls == ITERATIONS / CALL_EVERY, "calls %u", calls);
    CHECK(bad == 0, "%u calls saw IF=0 or IOPL!=0", bad);
    return sample_status();
}
