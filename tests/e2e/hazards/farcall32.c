/* 32-bit: far calls (direct and through memory) to CS 0x23, far return, and TF single-stepping past. */
#include <stdio.h>
extern void target(void);
__asm__(".text\ntarget: mov $42, %eax\n lret\n");
int main(void)
{
    struct __attribute__((packed)) { unsigned off; unsigned short sel; } fp = { (unsigned)target, 0x23 };
    int r = 0, s = 0;
    __asm__ volatile("lcall *(%1)" : "=a"(r) : "r"(&fp) : "memory");
    __asm__ volatile("lcall $0x23, $target" : "=a"(s) :: "memory");
    printf("far calls returned %d %d\n", r, s);
    return 0;
}
