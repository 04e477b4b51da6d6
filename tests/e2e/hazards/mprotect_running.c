/* Two threads call a jump-patched function of a library (lib/libtsc.c:
 * RDTSC) while the main thread mprotects its code again and again: the
 * patches must stay in place for threads running through them. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/mman.h>
static uint64_t (*f)(uint64_t);
static volatile int stop;
static void trap(int s, siginfo_t *si, void *uc) {
    ucontext_t *u = uc;
    unsigned char *pc = (unsigned char *)u->uc_mcontext.gregs[REG_RIP];
    char buf[200];
    int n = snprintf(buf, sizeof buf, "sig %d code %d rip %p (f=%p) bytes at rip-1: %02x %02x %02x %02x %02x\n",
                     s, si->si_code, pc, (void *)f, pc[-1], pc[0], pc[1], pc[2], pc[3]);
    write(1, buf, n);
    _exit(3);
}
static void *worker(void *a) {
    uint64_t s = 0;
    for (long i = 0; !stop; i++) s += f(i) & 1;
    return (void *)s;
}
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = trap; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, 0); sigaction(SIGSEGV, &sa, 0); sigaction(SIGILL, &sa, 0); sigaction(SIGFPE, &sa, 0);
    void *h = dlopen("./libtsc.so", RTLD_NOW);
    f = (uint64_t (*)(uint64_t))dlsym(h, "lib_tsc");
    void *page = (void *)((uintptr_t)f & ~4095ul);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, worker, 0);
    for (int i = 0; i < n; i++)
        if (mprotect(page, 4096, PROT_READ | PROT_EXEC)) { perror("mprotect"); return 1; }
    stop = 1;
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    printf("ok\n");
    return 0;
}
