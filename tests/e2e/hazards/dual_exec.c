/* 300 fresh RWX pages of code; two threads run each one at the same moment (a barrier), never writing it again. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#define N 300
static unsigned char *pages[N];
static pthread_barrier_t b;
static void *run(void *a)
{
    (void)a;
    for (int i = 0; i < N; i++) {
        pthread_barrier_wait(&b);
        ((unsigned long (*)(void))pages[i])();
    }
    return 0;
}
int main(void)
{
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 };
    unsigned char *m = mmap(0, 4096 * N, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < N; i++) { pages[i] = m + 4096 * i; memcpy(pages[i], code, sizeof code); }
    pthread_barrier_init(&b, 0, 2);
    pthread_t t;
    pthread_create(&t, 0, run, 0);
    run(0);
    pthread_join(t, 0);
    printf("done\n");
    return 0;
}
