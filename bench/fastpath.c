/* popek — bench/fastpath: what a patched instruction costs on the fast path.
 *
 * Usage: fastpath POPEK
 *        fastpath --loop pushf|smsw N   (the loop `popek run` times)
 *
 * Measures, in one run, nanoseconds per instruction (per pair for
 * PUSHF+POPF):
 *   - native: the instruction in a loop in this process (SMSW and SGDT on a
 *     CPU with UMIP: the Linux kernel's own emulation, a #GP each);
 *   - fast path: the blocks of patcher/fastpath.c, in a loop in an
 *     executable page beside their vcpu page;
 *   - the INT3 path: the same loop run by `popek run --tactic int3` (each
 *     instruction a ptrace stop in the monitor), with N and with 0
 *     iterations, the difference divided by N;
 *   - the fast path under the monitor: the same loop run by `popek run
 *     --fast-path`, its sites jump-patched into trampolines whose blocks
 *     read the vcpu page the monitor maps beside them.
 * Every figure is printed with its ratio to native, and the INT3 path's
 * to the fast path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "popek/fastpath.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- native loops ------------------------------------------------------------------ */

static void native_pushf_popf(long n)
{
    for (long i = 0; i < n; i++)
        __asm__ volatile("pushf\n\tpopf" ::: "memory", "cc");
}

static void native_smsw(long n)
{
    for (long i = 0; i < n; i++) {
        unsigned long v;
        __asm__ volatile("smsw %0" : "=r"(v));
    }
}

static void native_sgdt(long n)
{
    unsigned char buf[16];
    for (long i = 0; i < n; i++)
        __asm__ volatile("sgdt %0" : "=m"(buf));
}

static void native_mov_cs(long n)
{
    for (long i = 0; i < n; i++) {
        unsigned long v;
        __asm__ volatile("mov %%cs, %0" : "=r"(v));
    }
}

/* ---- fast-path loops ----------------------------------------------------------------- */

enum { ARENA = 0x4000, PAGE_AT = 0x3000 };

static uint8_t *arena;

/* A loop in the arena: the blocks of the instructions given (bytes,
 * decoded as 64-bit code), then dec r8; jnz; ret. Returns its entry. */
static uint8_t *fast_loop(const uint8_t *const insns[], const size_t lens[], size_t count)
{
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    uint8_t *code = arena;
    size_t off = 0;
    uint64_t slow = (uint64_t)(uintptr_t)(arena + PAGE_AT - 16); /* ud2: never reached */
    arena[PAGE_AT - 16] = 0x0f;
    arena[PAGE_AT - 15] = 0x0b;
    for (size_t i = 0; i < count; i++) {
        ZydisDecodedInstruction insn;
        ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
        size_t len;
        pk_error err;
        if (ZYAN_FAILED(ZydisDecoderDecodeFull(&dec, insns[i], lens[i], &insn, ops)) ||
            pk_fastpath_emit(&insn, ops, 64, false, (uint64_t)(uintptr_t)code + off,
                             (uint64_t)(uintptr_t)code + off,
                             (uint64_t)(uintptr_t)(arena + PAGE_AT), slow, code + off, &len,
                             &err) != PK_OK) {
            fprintf(stderr, "fastpath: cannot emit a block: %s\n", err.msg);
            exit(1);
        }
        off += len;
    }
    static const uint8_t tail[] = { 0x49, 0xff, 0xc8, /* dec r8 */
                                    0x0f, 0x85, 0, 0, 0, 0, /* jnz loop */
                                    0xc3 };
    memcpy(code + off, tail, sizeof tail);
    int32_t back = -(int32_t)(off + 9);
    memcpy(code + off + 5, &back, 4);
    return code;
}

static void run_fast(uint8_t *loop, long n, void *buf)
{
    /* (past this function's red zone, which the call would overwrite) */
    __asm__ volatile("mov %0, %%r8\n\t"
                     "mov %2, %%rdi\n\t"
                     "lea -128(%%rsp), %%rsp\n\t"
                     "call *%1\n\t"
                     "lea 128(%%rsp), %%rsp"
                     :
                     : "r"(n), "r"(loop), "r"(buf)
                     : "r8", "rdi", "memory", "cc");
}

/* ---- through popek run ----------------------------------------------------------------- */

/* Nanoseconds per iteration of `fastpath --loop what` under popek run with
 * option (--tactic int3, or --fast-path). */
static double under_popek(const char *popek, const char *option, const char *self,
                          const char *what, long n)
{
    double t[2];
    for (int k = 0; k < 2; k++) {
        char count[32];
        snprintf(count, sizeof count, "%ld", k ? n : 0);
        double best = 1e9;
        for (int r = 0; r < 3; r++) {
            double s = now();
            pid_t pid = fork();
            if (pid == 0) {
                if (strcmp(option, "--fast-path") == 0)
                    execl(popek, popek, "run", option, "--no-cache", "--", self, "--loop",
                          what, count, (char *)NULL);
                else
                    execl(popek, popek, "run", "--tactic", "int3", "--no-cache", "--", self,
                          "--loop", what, count, (char *)NULL);
                _exit(127);
            }
            int status;
            waitpid(pid, &status, 0);
            double e = now() - s;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "fastpath: popek run failed\n");
                exit(1);
            }
            if (e < best)
                best = e;
        }
        t[k] = best;
    }
    return (t[1] - t[0]) / n * 1e9;
}

/* ---- the run ------------------------------------------------------------------------- */

typedef void (*native_fn)(long);

static double time_native(native_fn f, long n)
{
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double s = now();
        f(n);
        double e = now() - s;
        if (e < best)
            best = e;
    }
    return best / n * 1e9;
}

static double time_fast(uint8_t *loop, long n, void *buf)
{
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        double s = now();
        run_fast(loop, n, buf);
        double e = now() - s;
        if (e < best)
            best = e;
    }
    return best / n * 1e9;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--loop") == 0) {
        long n = atol(argv[3]);
        if (strcmp(argv[2], "pushf") == 0)
            native_pushf_popf(n);
        else
            native_smsw(n);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: fastpath POPEK\n");
        return 2;
    }
    arena = mmap(NULL, ARENA, PROT_READ | PROT_WRITE | PROT_EXEC,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (arena == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pk_vcpu v;
    pk_vcpu_reset(&v, 64);
    v.vflags = PK_FLAG_IF;
    pk_vcpu_page_store((pk_vcpu_page *)(arena + PAGE_AT), &v, false);
    uint8_t buf[16];

    static const uint8_t pushfq[] = { 0x9c }, popfq[] = { 0x9d };
    static const uint8_t smsw_eax[] = { 0x0f, 0x01, 0xe0 }, sgdt_rdi[] = { 0x0f, 0x01, 0x07 };
    static const uint8_t mov_cs[] = { 0x8c, 0xc8 };
    const long n = 2000000, n_slow = 200000;

    printf("nanoseconds per instruction (PUSHF+POPF: per pair), best of 5:\n");
    struct {
        const char *name;
        native_fn native;
        const uint8_t *insns[2];
        size_t lens[2];
        size_t count;
    } rows[] = {
        { "PUSHF+POPF", native_pushf_popf, { pushfq, popfq }, { 1, 1 }, 2 },
        { "SMSW r32", native_smsw, { smsw_eax }, { 3 }, 1 },
        { "SGDT m", native_sgdt, { sgdt_rdi }, { 3 }, 1 },
        { "MOV r32, CS", native_mov_cs, { mov_cs }, { 2 }, 1 },
    };
    double fast_pair = 0, fast_smsw = 0, native_pair = 0, native_smsw_ns = 0;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        /* SMSW and SGDT natively trap to the kernel (UMIP): fewer of them */
        long count = i == 1 || i == 2 ? n_slow : n;
        double native = time_native(rows[i].native, count);
        uint8_t *loop = fast_loop(rows[i].insns, rows[i].lens, rows[i].count);
        double fast = time_fast(loop, n, buf);
        printf("  %-12s native%s %8.1f   fast path %7.1f  (%.2fx native)\n", rows[i].name,
               i == 1 || i == 2 ? " (UMIP)" : "       ", native, fast, fast / native);
        if (i == 0)
            fast_pair = fast, native_pair = native;
        if (i == 1)
            fast_smsw = fast, native_smsw_ns = native;
    }
    double int3_pair = under_popek(argv[1], "int3", argv[0], "pushf", 20000);
    double int3_smsw = under_popek(argv[1], "int3", argv[0], "smsw", 20000);
    printf("the INT3 path (popek run --tactic int3, a ptrace stop each):\n");
    printf("  %-12s %9.0f   %.0fx the fast path\n", "PUSHF+POPF", int3_pair,
           int3_pair / fast_pair);
    printf("  %-12s %9.0f   %.0fx the fast path\n", "SMSW r32", int3_smsw,
           int3_smsw / fast_smsw);
    double run_pair = under_popek(argv[1], "--fast-path", argv[0], "pushf", n * 10);
    double run_smsw = under_popek(argv[1], "--fast-path", argv[0], "smsw", n * 10);
    printf("the fast path in trampolines (popek run --fast-path):\n");
    printf("  %-12s %9.1f   %.2fx native, %.0fx cheaper than the INT3 path\n", "PUSHF+POPF",
           run_pair, run_pair / native_pair, int3_pair / run_pair);
    printf("  %-12s %9.1f   %.0fx cheaper than Linux's UMIP emulation\n", "SMSW r32",
           run_smsw, native_smsw_ns / run_smsw);
    return 0;
}
