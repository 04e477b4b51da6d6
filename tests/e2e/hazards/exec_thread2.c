/* A non-leader thread execs argv[1] while the main thread runs PUSHF in a loop. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static char **args;
static void *t(void *a) { (void)a; usleep(20000); execv(args[1], args + 1); perror("execv"); return 0; }
int main(int argc, char **argv)
{
    (void)argc;
    args = argv;
    pthread_t th;
    pthread_create(&th, 0, t, 0);
    for (;;) { unsigned long f; __asm__ volatile("pushf; pop %0" : "=r"(f)); }
}
