/* What sig_state.c and sig_calls.c share: a patched site, written code
 * that runs it, and the signal state shown and changed. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

/* PUSHF: a site of the default set. */
static unsigned long site(void)
{
    unsigned long f;
    __asm__ volatile("pushf; pop %0" : "=r"(f));
    return f;
}

/* Writes pushf; pop; ret into a page of its own and runs it, writes it
 * again (data once more) and runs it again. */
static void run_written_code(void)
{
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 };
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(p, code, sizeof code);
    ((unsigned long (*)(void))p)();
    p[0] = 0x9c;
    ((unsigned long (*)(void))p)();
    munmap(p, 4096);
}

/* What sig's handler is now, and whether it is blocked. */
static void show(const char *what, int sig)
{
    struct sigaction sa;
    sigset_t cur;
    sigaction(sig, NULL, &sa);
    sigprocmask(SIG_BLOCK, NULL, &cur);
    const char *how = sa.sa_handler == SIG_IGN   ? "ignored"
                      : sa.sa_handler == SIG_DFL ? "default"
                                                 : "handled";
    printf("  %s: %s, %s\n", what, how, sigismember(&cur, sig) ? "blocked" : "not blocked");
    fflush(stdout);
}

/* sigprocmask(how) of sig alone. */
static void block(int sig, int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(how, &s, NULL);
}
