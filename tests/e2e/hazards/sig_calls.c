/* The ways a program changes its signal state, each in a child of its
 * own, then a patched site (or written code) and a check of the state: the
 * monitor must follow every one (review repros). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "signal_state.h"

static volatile int handled;
static void on_signal(int sig) { (void)sig; handled++; }

/* rt_sigaction with act == oldact: the kernel writes the old one over it. */
static void same_buffer(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    syscall(SYS_rt_sigaction, SIGTRAP, &sa, &sa, 8);
    site();
    show("SIG_IGN set through act == oldact", SIGTRAP);
    raise(SIGTRAP);
}

/* The new action is set before the old one fails to be written back. */
static void bad_oldact(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    long r = syscall(SYS_rt_sigaction, SIGTRAP, &sa, (void *)8, 8);
    printf("  rt_sigaction with a bad oldact: %ld (errno %d)\n", r, errno);
    site();
    show("after a site", SIGTRAP);
    raise(SIGTRAP);
}

/* A SIGTRAP pending while blocked when a site runs: the kernel drops the
 * site's trap for it. */
static void pending_trap(void)
{
    signal(SIGTRAP, on_signal);
    block(SIGTRAP, SIG_BLOCK);
    raise(SIGTRAP);
    site();
    show("pending SIGTRAP, site run", SIGTRAP);
    block(SIGTRAP, SIG_UNBLOCK);
    printf("  handled after unblocking: %d\n", handled);
}

/* The same with SIGSEGV and written code the monitor holds. */
static void pending_segv(void)
{
    signal(SIGSEGV, on_signal);
    block(SIGSEGV, SIG_BLOCK);
    raise(SIGSEGV);
    run_written_code();
    show("pending SIGSEGV, written code run", SIGSEGV);
    block(SIGSEGV, SIG_UNBLOCK);
    printf("  handled after unblocking: %d\n", handled);
}

/* A handler that runs while sigsuspend waits with a temporary mask. */
static void on_usr1(int sig)
{
    (void)sig;
    site();
    show("in a handler during sigsuspend, site run", SIGTRAP);
}

static void suspended(void)
{
    signal(SIGTRAP, on_signal);
    signal(SIGUSR1, on_usr1);
    sigset_t b, temporary;
    sigemptyset(&b);
    sigaddset(&b, SIGUSR1);
    sigprocmask(SIG_BLOCK, &b, NULL);
    kill(getpid(), SIGUSR1);
    sigemptyset(&temporary);
    sigaddset(&temporary, SIGTRAP);
    sigsuspend(&temporary);
    show("after sigsuspend", SIGTRAP);
    raise(SIGTRAP);
    printf("  handled: %d\n", handled);
}

/* A child that shares its parent's handlers (CLONE_SIGHAND, no thread). */
static char stack[65536];
static int ignore_trap(void *arg)
{
    (void)arg;
    signal(SIGTRAP, SIG_IGN);
    return 0;
}

static void shared_handlers(void)
{
    int pid = clone(ignore_trap, stack + sizeof stack, CLONE_VM | CLONE_SIGHAND | SIGCHLD, NULL);
    waitpid(pid, NULL, 0);
    site();
    show("SIG_IGN set by a CLONE_SIGHAND child", SIGTRAP);
    raise(SIGTRAP);
}

#ifdef __x86_64__
/* rt_sigaction through INT 0x80 from 64-bit code: the i386 layout. */
static void int80_sigaction(void)
{
    uint32_t *k = mmap(0, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    k[0] = 1; /* SIG_IGN */
    k[1] = SA_RESTART;
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(174), "b"(SIGTRAP), "c"(k), "d"(0), "S"(8)
                     : "memory");
    site();
    show("SIG_IGN set through INT 0x80", SIGTRAP);
    raise(SIGTRAP);
}
#else
static long call32(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return r;
}

/* signal(), sigaction() and ssetmask() of old. */
static void old_calls(void)
{
    call32(48, SIGTRAP, 1 /* SIG_IGN */, 0);
    site();
    show("SIG_IGN set by signal()", SIGTRAP);
    raise(SIGTRAP);
    struct { void *handler; unsigned long mask, flags; void *restorer; } k = { SIG_DFL, 0, 0, 0 };
    call32(67, SIGTRAP, (long)&k, (long)&k);
    site();
    show("SIG_DFL set by the old sigaction()", SIGTRAP);
    signal(SIGTRAP, on_signal);
    call32(69, 1L << (SIGTRAP - 1), 0, 0);
    site();
    show("blocked by ssetmask()", SIGTRAP);
    raise(SIGTRAP);
    printf("  handled while blocked: %d\n", handled);
}
#endif

static const struct {
    const char *name;
    void (*run)(void);
} cases[] = {
    { "act == oldact", same_buffer },
    { "bad oldact", bad_oldact },
    { "pending SIGTRAP", pending_trap },
    { "pending SIGSEGV", pending_segv },
    { "sigsuspend", suspended },
    { "CLONE_SIGHAND", shared_handlers },
#ifdef __x86_64__
    { "INT 0x80 rt_sigaction", int80_sigaction },
#else
    { "old calls", old_calls },
#endif
};

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        printf("%s:\n", cases[i].name);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            cases[i].run();
            fflush(stdout);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        printf("  %s %d\n", WIFEXITED(status) ? "exit" : "killed by",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    return 0;
}
