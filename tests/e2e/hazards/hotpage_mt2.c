/* An RWX page holding a PUSHF function and a counter: the main thread
 * increments the counter; two other threads call the function. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static unsigned char *page;
static volatile int stop;
static void *caller(void *a)
{
    unsigned long bad = 0;
    while (!stop) {
        unsigned long f = ((unsigned long (*)(void))page)();
        bad += !(f & 0x200);
    }
    return (void *)bad;
}
int main(void)
{
    page = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 };
    memcpy(page, code, sizeof code);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, caller, 0);
    for (int i = 0; i < 20000; i++)
        (*(volatile unsigned *)(page + 2048))++;
    stop = 1;
    void *r; unsigned long bad = 0;
    for (int i = 0; i < 2; i++) { pthread_join(t[i], &r); bad += (unsigned long)r; }
    printf("counter %u, bad %lu\n", *(unsigned *)(page + 2048), bad);
    return 0;
}
