/* 64-bit code maps RWX memory with the i386 mmap2 (int 0x80) and runs an SGDT there. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static long int80(long nr, long a, long b, long c, long d, long e, long f)
{
    long r;
    register long r8 __asm__("r8") = 0; (void)r8;
    __asm__ volatile("push %%rbp; mov %7, %%rbp; int $0x80; pop %%rbp" : "=a"(r)
                     : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e), "m"(f) : "memory");
    return r;
}
int main(void)
{
    unsigned char sg[10] = {0};
    __asm__ volatile("sgdt %0" : "=m"(sg));
    printf("static sgdt limit 0x%x\n", sg[0] | sg[1] << 8);
    long p = int80(192, 0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p < 0 && p > -4096) { printf("mmap2 %ld\n", p); return 1; }
    unsigned char *q = (unsigned char *)(unsigned long)(unsigned)p;
    /* sgdt [rdi]; ret */
    static const unsigned char code[] = { 0x0f, 0x01, 0x07, 0xc3 };
    memcpy(q, code, sizeof code);
    memset(sg, 0, sizeof sg);
    ((void (*)(void *))q)(sg);
    printf("jit sgdt limit 0x%x\n", sg[0] | sg[1] << 8);
    return 0;
}
