/* JIT: runs an SGDT, replaces the buffer with a fresh mmap(MAP_FIXED, RW), writes
 * INT3; RET there (its own breakpoint, with a SIGTRAP handler), mprotects R-X and runs it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static volatile int traps;
static void h(int s) { (void)s; traps++; }
int main(void)
{
    signal(SIGTRAP, h);
    unsigned char sg[10];
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static const unsigned char c1[] = { 0x0f, 0x01, 0x07, 0xc3 };  /* sgdt [rdi]; ret */
    static const unsigned char c2[] = { 0xcc, 0xc3 };              /* int3; ret */
    memcpy(p, c1, sizeof c1);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    ((void (*)(void *))p)(sg);
    mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    memcpy(p, c2, sizeof c2);
    mprotect(p, 4096, PROT_READ | PROT_EXEC);
    memset(sg, 0xee, sizeof sg);
    ((void (*)(void *))p)(sg);
    printf("SIGTRAPs %d, sg[0]=0x%02x\n", traps, sg[0]);
    return 0;
}
