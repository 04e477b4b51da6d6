/* Threads run PUSHF (patched, emulated) in a loop while main exits with status 7. */
#include <pthread.h>
#include <unistd.h>
static void *worker(void *a)
{
    (void)a;
    for (;;) { unsigned long f; __asm__ volatile("pushf; pop %0" : "=r"(f)); }
    return 0;
}
int main(void)
{
    pthread_t t;
    for (int i = 0; i < 4; i++)
        pthread_create(&t, 0, worker, 0);
    usleep(50000);
    _exit(7);
}
