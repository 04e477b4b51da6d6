/* Writes to its own read-only JIT page (R-X) and expects SIGSEGV. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static sigjmp_buf jb;
static void h(int s, siginfo_t *si, void *c) { (void)s; (void)si; (void)c; siglongjmp(jb, 1); }
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 }; /* pushf; pop rax; ret */
    memcpy(p, code, sizeof code);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    unsigned long f = ((unsigned long (*)(void))p)();
    printf("flags IF=%lu\n", (f >> 9) & 1);
    struct sigaction sa = { .sa_sigaction = h, .sa_flags = SA_SIGINFO };
    sigaction(SIGSEGV, &sa, 0);
    if (sigsetjmp(jb, 1) == 0) {
        *(volatile unsigned char *)(p + 100) = 1;
        printf("write went through\n");
    } else {
        printf("SIGSEGV as expected\n");
    }
    return 0;
}
