/* A worker rewrites and runs JIT code (no system calls); another thread sends it
 * SIGUSR1 1000 times, each time waiting up to 2 s for the handler to run. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static volatile int got, stop;
static volatile pid_t wtid;
static void h(int s) { (void)s; got++; }
static void *worker(void *a)
{
    (void)a;
    wtid = syscall(SYS_gettid);
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 };
    memcpy(p, code, sizeof code);
    while (!stop) {
        p[2048]++;                                 /* write fault: back to data */
        ((unsigned long (*)(void))p)();            /* exec fault: scanned again */
    }
    return 0;
}
int main(void)
{
    signal(SIGUSR1, h);
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    while (!wtid) usleep(1000);
    usleep(10000);
    int lost = 0;
    for (int i = 0; i < 1000 && !lost; i++) {
        int before = got;
        syscall(SYS_tgkill, getpid(), wtid, SIGUSR1);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (got == before) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (t1.tv_sec - t0.tv_sec > 2) { printf("signal %d not delivered after 2 s\n", i); lost = 1; break; }
        }
    }
    stop = 1;
    pthread_join(t, 0);
    printf("delivered %d, lost %d\n", got, lost);
    return lost;
}
