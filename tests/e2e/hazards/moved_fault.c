#define _GNU_SOURCE
/* A load moved into a trampoline (after a PUSHF that takes a jump) faults.
 * The SIGSEGV handler sees the load's own address, once retrying it with a
 * good pointer, once skipping it; and a SIGALRM while the loop around it
 * runs returns where it struck. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <sys/time.h>

/* probe(p): pushf; load *p; popf; return it (or 7 when the load is skipped). */
unsigned probe(const unsigned *p);
__asm__(".text\n"
        ".globl probe\n"
        ".type probe, @function\n"
        "probe:\n"
        "    mov $7, %eax\n"
        "    pushf\n"
        "    mov (%rdi), %eax\n"
        "    popf\n"
        "    ret\n"
        ".size probe, .-probe\n");

static const unsigned good = 42;
static int skip;
static long where[2];
static int faults;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    if (faults < 2)
        where[faults] = (long)(uc->uc_mcontext.gregs[REG_RIP] - (intptr_t)probe);
    faults++;
    if (skip)
        uc->uc_mcontext.gregs[REG_RIP] += 2; /* past mov (%rdi), %eax */
    else
        uc->uc_mcontext.gregs[REG_RDI] = (intptr_t)&good;
}

static volatile unsigned long alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    unsigned v = probe((const unsigned *)16);
    printf("retried: %u, fault at probe+%ld\n", v, where[0]);
    skip = 1;
    v = probe((const unsigned *)16);
    printf("skipped: %u, fault at probe+%ld\n", v, where[1]);

    signal(SIGALRM, on_alarm);
    struct itimerval it = { { 0, 200 }, { 0, 200 } };
    setitimer(ITIMER_REAL, &it, NULL);
    unsigned long sum = 0;
    for (unsigned long i = 0; i < 1000 || alarms < 50; i++)
        sum += probe(&good);
    it = (struct itimerval){ { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &it, NULL);
    printf("loop: sum %s, faults %d\n", sum % 42 == 0 ? "right" : "wrong", faults);
    return 0;
}
