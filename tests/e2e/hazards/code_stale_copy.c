/* An instruction at the end of an RWX page stores into its own page (runs
 * from an out-of-line copy); the page then holds data; the program writes a
 * LAR at the same address and runs it. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
typedef unsigned (*fn)(unsigned);
int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    unsigned char *p = mmap(0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *x = p + 4096 - 6;
    /* x: mov [rip - 0x800], edi  (89 3d disp32) ; next page: mov eax, edi; ret */
    int disp = -0x800;
    x[0] = 0x89; x[1] = 0x3d; memcpy(x + 2, &disp, 4);
    static const unsigned char tail[] = { 0x89, 0xf8, 0xc3 };
    memcpy(p + 4096, tail, sizeof tail);
    printf("store %u\n", ((fn)x)(7));
    printf("stored %u\n", *(unsigned *)(p + 4096 - 0x800));
    /* mov ecx, edi; lar eax, ecx; ret  (5 bytes... ) ; fits in the 6 */
    static const unsigned char lar[] = { 0x0f, 0x02, 0xc7, 0xc3 };
    memcpy(x, lar, sizeof lar);
    printf("lar 0x2b = 0x%x\n", ((fn)x)(0x2b));
    return 0;
}
