/* 4 threads, each: mmap an RWX page, write PUSHF;POP;RET, call it, munmap; 500 times. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static void *worker(void *a)
{
    (void)a;
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 };
    for (int i = 0; i < 500; i++) {
        unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memcpy(p, code, sizeof code);
        unsigned long f = ((unsigned long (*)(void))p)();
        if (!(f & 0x200)) { printf("IF clear\n"); }
        munmap(p, 4096);
    }
    return 0;
}
int main(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], 0, worker, 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], 0);
    printf("done\n");
    return 0;
}
