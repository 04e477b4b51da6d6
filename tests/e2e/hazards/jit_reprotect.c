/* W^X JIT: runs LAR at X; mprotects the page RWX, turns LAR into LSL there (one opcode byte), mprotects R-X, runs it. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
typedef unsigned (*fn)(unsigned);
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char lar[] = { 0x89, 0xf9, 0x0f, 0x02, 0xc1, 0xc3 }; /* mov ecx,edi; lar eax,ecx; ret */
    memcpy(p, lar, sizeof lar);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    printf("lar 0x2b = 0x%x\n", ((fn)p)(0x2b));
    mprotect(p, 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
    p[3] = 0x03;
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    printf("lsl 0x2b = 0x%x\n", ((fn)p)(0x2b));
    return 0;
}
