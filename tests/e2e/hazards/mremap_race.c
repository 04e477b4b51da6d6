/* The main thread moves a page of a library's code back and forth with
 * mremap(MREMAP_FIXED) and calls the function on it; another thread makes
 * filtered calls (mprotect of an unrelated page) all the while. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>
static volatile int stop;
static char *A, *B;
static void trap(int s, siginfo_t *si, void *uc) {
    unsigned char *pc = (unsigned char *)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
    char buf[200];
    int n = snprintf(buf, sizeof buf, "SIGTRAP code %d rip %p (pages %p %p) byte at rip-1: %02x\n",
                     si->si_code, pc, A, B, pc[-1]);
    write(1, buf, n);
    _exit(3);
}
static void *churn(void *a) {
    char *p = a;
    while (!stop) mprotect(p, 4096, PROT_READ | PROT_EXEC), mprotect(p, 4096, PROT_READ | PROT_WRITE);
    return 0;
}
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3000;
    char *junk = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_t t;
    pthread_create(&t, 0, churn, junk);
    int fd = open("./libtsc.so", O_RDONLY);
    char *area = mmap(0, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *a = area, *b = area + 2 * 4096;
    A = a; B = b;
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = trap; sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, 0);
    char *cur = mmap(a, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_FIXED, fd, 0x1000);
    uint64_t s = 0;
    for (int i = 0; i < n; i++) {
        char *to = cur == a ? b : a;
        cur = mremap(cur, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, to);
        if (cur == MAP_FAILED) { perror("mremap"); return 1; }
        mmap(to == a ? b : a, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        uint64_t (*f)(uint64_t) = (uint64_t (*)(uint64_t))(cur + 0x100);
        s += f(4) / 3;
    }
    stop = 1;
    pthread_join(t, 0);
    printf("%llu\n", (unsigned long long)s);
    return 0;
}
