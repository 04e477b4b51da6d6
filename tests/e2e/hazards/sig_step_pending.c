#define _GNU_SOURCE
/* SIGTRAP blocked with one of the program's own pending (rt_tgsigqueueinfo)
 * while (mode 0) JIT code stores into its own page, or (mode 1) a LAR site
 * runs; then SIGTRAP unblocked: its handler must run once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
static volatile int n, code, val;
static void h(int s, siginfo_t *si, void *c) { (void)s; (void)c; n++; code = si->si_code; val = si->si_value.sival_int; }
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    struct sigaction sa = { .sa_sigaction = h, .sa_flags = SA_SIGINFO };
    sigaction(SIGTRAP, &sa, 0);
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char st[] = { 0x48, 0x89, 0x37, 0xc3 };             /* mov [rdi], rsi; ret */
    static const unsigned char lar[] = { 0x0f, 0x02, 0xc6, 0xc3 };            /* lar eax, esi; ret */
    memcpy(p, mode ? lar : st, 4);
    long (*f)(void *, long) = (long (*)(void *, long))p;
    f(p + 2048, 1); /* page is code, patched */
    sigset_t s; sigemptyset(&s); sigaddset(&s, SIGTRAP);
    sigprocmask(SIG_BLOCK, &s, 0);
    siginfo_t si; memset(&si, 0, sizeof si);
    si.si_signo = SIGTRAP; si.si_code = SI_QUEUE; si.si_pid = getpid(); si.si_uid = getuid();
    si.si_value.sival_int = 222;
    syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGTRAP, &si);
    long r = f(p + 2048, 0x2b);
    sigprocmask(SIG_UNBLOCK, &s, 0);
    printf("r %lx trap %d code %d val %d\n", mode ? r : *(long *)(p + 2048), n, code, val);
    return 0;
}
