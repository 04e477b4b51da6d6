/* samples/run/threads.c — sensitive instructions in several threads at
 * once. Four threads start together and each runs 20000 rounds of:
 *
 *   - BT sets CF to the round's parity, then PUSHF; POPF, then CF is read
 *     back (it must have survived) and PUSHF again (IF must be 1);
 *   - SGDT, which must equal the value main read before the threads began.
 *
 * A monitor patches these sites once, in an address space all four
 * threads share, while others may be about to run them, and must keep
 * each thread's flags its own. Results are printed after the joins, in
 * thread order, so the transcript does not depend on scheduling. */
#include <pthread.h>
#include <stdint.h>

#include "sample.h"

#define THREADS 4
#define ROUNDS  20000

struct worker {
    pthread_t thread;
    unsigned flag_errors;   /* CF lost across PUSHF/POPF, or IF != 1 */
    unsigned sgdt_errors;   /* SGDT differed from main's */
};

static struct worker workers[THREADS];
static pthread_barrier_t start;
static table_reg gdtr;      /* main's SGDT, read before any thread runs */

/* CF := bit 0 of v, then PUSHF; POPF. Returns CF after the pair in *cf and
 * the flags PUSHF shows after it. */
static uintptr_t flags_round_trip(uintptr_t v, uint8_t *cf)
{
    uintptr_t f;
    __asm__ volatile(SKIP_RED_ZONE
                     "bt $0, %[v]\n\t"
                     "pushf\n\t"
                     "popf\n\t"
                     "setc %[cf]\n\t"
                     "pushf\n\t"
                     "pop %[f]\n\t"
                     RESTORE_RED_ZONE
                     : [cf] "=q"(*cf), [f] "=r"(f)
                     : [v] "r"(v)
                     : "cc", "memory");
    return f;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&start);
    for (uintptr_t i = 0; i < ROUNDS; i++) {
        uint8_t cf;
        uintptr_t f = flags_round_trip(i, &cf);
        if (cf != (i & 1) || flags_if(f) != 1)
            w->flag_errors++;
        table_reg t = sgdt();
        if (t.limit != gdtr.limit || t.base != gdtr.base)
            w->sgdt_errors++;
    }
    return NULL;
}

int main(void)
{
    gdtr = sgdt();
    pthread_barrier_init(&start, NULL, THREADS);
    for (int n = 0; n < THREADS; n++)
        if (pthread_create(&workers[n].thread, NULL, work, &workers[n]) != 0) {
            perror("pthread_create");
            return 2;
        }
    for (int n = 0; n < THREADS; n++)
        pthread_join(workers[n].thread, NULL);

    for (int n = 0; n < THREADS; n++) {
        struct worker *w = &workers[n];
        if (w->flag_errors == 0 && w->sgdt_errors == 0)
            printf("thread %d: ok\n", n);
        else
            printf("thread %d: %u flag errors, %u sgdt errors\n", n,
                   w->flag_errors, w->sgdt_errors);
        CHECK(w->flag_errors == 0 && w->sgdt_errors == 0, "thread %d", n);
    }
    printf("threads: %d x %d rounds, sgdt limit=0x%04x base=0x%0*llx\n",
           THREADS, ROUNDS, gdtr.limit, BASE_DIGITS,
           (unsigned long long)gdtr.base);
    return sample_status();
}
