/* mprotect(PROT_READ|PROT_WRITE|PROT_EXEC) over [page, hole, page] fails
 * with ENOMEM after changing the first page (Linux changes the mappings up
 * to the hole). The program then writes code into the first page and runs
 * it. mode 1: the page is RWX from the start and has run before. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/mman.h>
int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int mode = argc > 1 ? atoi(argv[1]) : 0;
    unsigned char *r = mmap(0, 3 * 4096, mode ? PROT_READ | PROT_WRITE | PROT_EXEC : PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(r + 4096, 4096);
    static const unsigned char c[] = { 0xb8, 0x2a, 0, 0, 0, 0xc3 }; /* mov eax, 42; ret */
    memcpy(r, c, sizeof c);
    if (mode)
        printf("before %d\n", ((int (*)(void))r)());
    int rc = mprotect(r, 3 * 4096, PROT_READ | PROT_WRITE | PROT_EXEC);
    printf("mprotect %d %s\n", rc, rc ? strerror(errno) : "");
    r[1] = 0x2b;
    printf("after %d\n", ((int (*)(void))r)());
    return 0;
}
