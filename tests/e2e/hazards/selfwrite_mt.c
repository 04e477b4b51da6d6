/* One thread stores into its own code page in a loop (a counter beside the
 * code), while three threads run PUSHF on that page. Every PUSHF must be
 * the monitor's: `popek run --stats` counts them (run-hazards checks). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

enum { READERS = 3, ROUNDS = 200, PER_ROUND = 50, WRITES = 400 };

static unsigned char *page;

static void *reader(void *arg)
{
    (void)arg;
    unsigned long (*run)(unsigned) = (unsigned long (*)(unsigned))page;
    for (int i = 0; i < ROUNDS; i++)
        run(PER_ROUND);
    return NULL;
}

int main(void)
{
    /* 0: mov ecx, edi; L: pushf; pop rax; dec ecx; jnz L; ret */
    static const unsigned char read_code[] = { 0x89, 0xf9, 0x9c, 0x58, 0xff, 0xc9,
                                               0x75, 0xfa, 0xc3 };
    /* 64: mov ecx, edi; L: mov [rip + 2048 - 64 - 8], ecx; dec ecx; jnz L; ret */
    static const unsigned char write_code[] = { 0x89, 0xf9, 0x89, 0x0d, 0xb8, 0x07, 0x00, 0x00,
                                                0xff, 0xc9, 0x75, 0xf6, 0xc3 };
    page = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(page, read_code, sizeof read_code);
    memcpy(page + 64, write_code, sizeof write_code);
    void (*write)(unsigned) = (void (*)(unsigned))(page + 64);
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++)
        pthread_create(&t[i], NULL, reader, NULL);
    for (int i = 0; i < WRITES; i++)
        write(3);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    printf("pushf run: %d\n", READERS * ROUNDS * PER_ROUND);
    printf("counter: %u\n", *(unsigned *)(page + 2048));
    return 0;
}
