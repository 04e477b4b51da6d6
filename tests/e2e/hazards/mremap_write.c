/* Runs JIT code in an RWX buffer, moves the buffer with mremap, then writes new code into it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0xb8, 0x2a, 0, 0, 0, 0xc3 }; /* mov eax,42; ret */
    memcpy(p, code, sizeof code);
    printf("before: %d\n", ((int (*)(void))p)());
    unsigned char *q = mremap(p, 4096, 8192, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) { perror("mremap"); return 1; }
    q[1] = 43; /* the buffer is still RWX */
    printf("after: %d\n", ((int (*)(void))q)());
    return 0;
}
