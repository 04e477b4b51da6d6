/* 32-bit PIE with a text relocation: LSL reads a selector at an absolute address. */
#include <stdio.h>
unsigned short sel = 0x2b;
int main(void)
{
    unsigned lim = 0;
    __asm__ volatile("lsl sel, %0" : "=r"(lim));   /* absolute operand: a text relocation */
    printf("lsl 0x2b = 0x%x\n", lim);
    return 0;
}
