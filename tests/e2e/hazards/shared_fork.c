/* A MAP_SHARED|MAP_ANONYMOUS RWX page with a PUSHF function, shared by a parent and its forked child. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void)
{
    unsigned char *x = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 };
    memcpy(x, code, sizeof code);
    pid_t c = fork();
    if (c == 0) {
        usleep(100000);  /* the parent runs the code first */
        unsigned long f = ((unsigned long (*)(void))x)();
        printf("child IF=%lu\n", (f >> 9) & 1);
        return 0;
    }
    unsigned long f = ((unsigned long (*)(void))x)();
    printf("parent IF=%lu\n", (f >> 9) & 1);
    fflush(stdout);
    int st;
    waitpid(c, &st, 0);
    printf("child status 0x%x\n", st);
    return 0;
}
