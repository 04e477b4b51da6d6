/* JIT: runs LAR at an address, then rewrites the same address with LSL and runs it. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
typedef unsigned (*fn)(unsigned);
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* mov ecx, edi; lar eax, ecx; ret */
    static const unsigned char lar[] = { 0x89, 0xf9, 0x0f, 0x02, 0xc1, 0xc3 };
    memcpy(p, lar, sizeof lar);
    printf("lar 0x2b = 0x%x\n", ((fn)p)(0x2b));
    p[3] = 0x03; /* lsl eax, ecx */
    printf("lsl 0x2b = 0x%x\n", ((fn)p)(0x2b));
    return 0;
}
