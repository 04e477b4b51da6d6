#define _GNU_SOURCE
/* Single-steps itself (TF) through JIT code that stores into its own page; counts the traps. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
static volatile int traps;
static unsigned char *page;
static void h(int s, siginfo_t *si, void *c)
{
    (void)s; (void)si;
    ucontext_t *u = c;
    unsigned long rip = u->uc_mcontext.gregs[REG_RIP];
    if (rip >= (unsigned long)page && rip < (unsigned long)page + 4096)
        traps++;
    else if (rip == (unsigned long)page + 4096) {}
}
int main(void)
{
    page = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* mov byte [rip+0x800], 1; nop; nop; nop; ret */
    static const unsigned char code[] = { 0xc6, 0x05, 0x00, 0x08, 0x00, 0x00, 0x01, 0x90, 0x90, 0x90, 0xc3 };
    memcpy(page, code, sizeof code);
    ((void (*)(void))page)();                 /* once without TF */
    struct sigaction sa = { .sa_sigaction = h, .sa_flags = SA_SIGINFO };
    sigaction(SIGTRAP, &sa, 0);
    for (int i = 0; i < 3; i++) {
        __asm__ volatile("pushf; orq $0x100, (%%rsp); popf\n\t"
                         "call *%0\n\t"
                         "pushf; andq $~0x100, (%%rsp); popf" :: "r"(page) : "memory", "cc");
    }
    printf("traps inside the JIT page: %d\n", traps);
    return 0;
}
