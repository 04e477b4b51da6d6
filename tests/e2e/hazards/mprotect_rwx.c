/* One thread runs PUSHF in a loop in the program's own code while another
 * makes that page writable and executable and then executable only, again
 * and again. Every PUSHF must be the monitor's: `popek run --stats` counts
 * them (run-hazards checks). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>

enum { ROUNDS = 3000, PER_ROUND = 10, FLIPS = 300 };

__attribute__((noinline, aligned(64))) static unsigned long spin(int n)
{
    unsigned long f = 0;
    for (int i = 0; i < n; i++) {
        unsigned long x;
        __asm__ volatile("pushf; pop %0" : "=r"(x));
        f |= x;
    }
    return f;
}

static volatile int done;

static void *flipper(void *arg)
{
    (void)arg;
    void *page = (void *)((uintptr_t)spin & ~(uintptr_t)4095);
    for (int i = 0; i < FLIPS && !done; i++) {
        mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
        mprotect(page, 4096, PROT_READ | PROT_EXEC);
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, flipper, NULL);
    unsigned long f = 0;
    for (int i = 0; i < ROUNDS; i++)
        f |= spin(PER_ROUND);
    done = 1;
    pthread_join(t, NULL);
    printf("pushf run: %d\n", ROUNDS * PER_ROUND);
    printf("IF seen: %lu\n", (f >> 9) & 1);
    return 0;
}
