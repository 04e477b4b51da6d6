/* LSL with a RIP-relative memory operand in an ordinary PIE executable. */
#include <stdio.h>
static unsigned short sel = 0x2b;
int main(void)
{
    unsigned lim;
    __asm__ volatile("lsl %1, %0" : "=r"(lim) : "m"(sel));
    printf("lsl 0x2b = 0x%x\n", lim);
    return 0;
}
