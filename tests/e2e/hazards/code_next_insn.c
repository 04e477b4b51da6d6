/* An instruction that stores into the next instruction (within 16 bytes of
 * its own rip) in an RWX page. Natively the CPU runs the new bytes. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
int main(void)
{
    unsigned char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* 0: mov byte [rip+1], 0xc3   (c6 05 01 00 00 00 c3) -> writes byte 8
       7: nop
       8: mov eax, 1 ; ret  (b8 01 00 00 00 c3)  -- overwritten by ret
       so result = 42 (eax from edi) */
    static const unsigned char code[] = { 0x89, 0xf8, /* mov eax, edi */
        0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0xc3, 0x90,
        0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3 };
    memcpy(p, code, sizeof code);
    int (*f)(int) = (int (*)(int))p;
    printf("first %d\n", f(1));
    /* second call: page has been code; run again (code unchanged now) */
    printf("second %d\n", f(2));
    /* rewrite and call again: now the write into next-insn hits a code page */
    memcpy(p, code, sizeof code);
    printf("third %d\n", f(3));
    return 0;
}
