/* Runs JIT code with a PUSHF, then moves the buffer with mremap and runs it again. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0x9c, 0x58, 0xc3 }; /* pushf; pop rax; ret */
    memcpy(p, code, sizeof code);
    unsigned long f = ((unsigned long (*)(void))p)();
    printf("before: IF=%lu\n", (f >> 9) & 1);
    unsigned char *q = mremap(p, 4096, 8192, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) { perror("mremap"); return 1; }
    f = ((unsigned long (*)(void))q)();
    printf("after: IF=%lu moved=%d\n", (f >> 9) & 1, q != p);
    q[200] = 1; /* the program asked for RWX */
    printf("write ok\n");
    return 0;
}
