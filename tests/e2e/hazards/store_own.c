/* JIT in an RWX page: an SGDT that stores into the same page (a data slot after the code). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char code[] = { 0x0f, 0x01, 0x07, 0xc3 }; /* sgdt [rdi]; ret */
    memcpy(p, code, sizeof code);
    ((void (*)(void *))p)(p + 2048);
    printf("sgdt limit 0x%x\n", p[2048] | p[2049] << 8);
    return 0;
}
