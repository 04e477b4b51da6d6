/* Patched sites and written code run while the program ignores, blocks or
 * handles SIGTRAP and SIGSEGV: its signal state stays as it set it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static volatile int traps;

static unsigned long flags(void)
{
    unsigned long f;
    __asm__ volatile("pushf; pop %0" : "=r"(f));
    return f;
}

static void on_trap(int sig)
{
    (void)sig;
    flags();
    traps++;
}

static void on_segv(int sig) { (void)sig; }

static void show(const char *what, int sig)
{
    struct sigaction sa;
    sigset_t cur;
    sigaction(sig, NULL, &sa);
    sigprocmask(SIG_BLOCK, NULL, &cur);
    const char *how = sa.sa_handler == SIG_IGN   ? "ignored"
                      : sa.sa_handler == SIG_DFL ? "default"
                                                 : "handled";
    printf("%s: %s, %s\n", what, how, sigismember(&cur, sig) ? "blocked" : "not blocked");
}

static void block(int sig, int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(how, &s, NULL);
}

static void run_written_code(void)
{
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 }; /* pushf; pop rax; ret */
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(p, code, sizeof code);
    ((unsigned long (*)(void))p)();
    p[0] = 0x9c; /* written again: data once more */
    ((unsigned long (*)(void))p)();
    munmap(p, 4096);
}

int main(void)
{
    signal(SIGTRAP, SIG_IGN);
    flags();
    show("SIGTRAP ignored, site run", SIGTRAP);
    raise(SIGTRAP);
    printf("raise(SIGTRAP) ignored\n");

    signal(SIGTRAP, on_trap);
    block(SIGTRAP, SIG_BLOCK);
    flags();
    show("SIGTRAP handled and blocked, site run", SIGTRAP);
    block(SIGTRAP, SIG_UNBLOCK);

    signal(SIGTRAP, SIG_DFL);
    block(SIGTRAP, SIG_BLOCK);
    flags();
    show("SIGTRAP default and blocked, site run", SIGTRAP);
    block(SIGTRAP, SIG_UNBLOCK);

    signal(SIGTRAP, on_trap);
    raise(SIGTRAP);
    raise(SIGTRAP);
    printf("a site in the SIGTRAP handler: %d traps handled\n", traps);
    show("after the handler", SIGTRAP);

    signal(SIGSEGV, on_segv);
    block(SIGSEGV, SIG_BLOCK);
    run_written_code();
    show("SIGSEGV handled and blocked, written code run", SIGSEGV);
    block(SIGSEGV, SIG_UNBLOCK);

    signal(SIGSEGV, SIG_IGN);
    run_written_code();
    show("SIGSEGV ignored, written code run", SIGSEGV);
    signal(SIGSEGV, SIG_DFL);
    block(SIGSEGV, SIG_BLOCK);
    run_written_code();
    show("SIGSEGV default and blocked, written code run", SIGSEGV);
    return 0;
}
