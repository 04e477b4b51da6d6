/* An instruction whose bytes cross from one RWX page into the next, storing
 * into the second page (or the first). */
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
typedef void (*fn)(void *, uint64_t);
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    unsigned char *p = mmap(0, 8192, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* mov [rdi], rsi (48 89 37) starting at 4096-2: crosses; then ret */
    unsigned char *x = p + 4096 - 2;
    static const unsigned char c[] = { 0x48, 0x89, 0x37, 0xc3 };
    memcpy(x, c, sizeof c);
    int which = argc > 1 ? atoi(argv[1]) : 0;
    unsigned char *dst = which == 0 ? p + 4096 + 2048 : p + 2048;
    ((fn)x)(dst, 0x55);
    printf("stored %lu\n", *(uint64_t *)dst);
    ((fn)x)(dst, 0x66);
    printf("stored %lu\n", *(uint64_t *)dst);
    return 0;
}
