/* samples/run/jit.c — a JIT: machine code written into memory at run time,
 * run, then rewritten and run again. None of it exists when the program
 * starts, so a monitor sees it only through the mmap/mprotect that makes
 * it executable, or through the write fault on a page it already patched.
 * Three ways JITs do it:
 *
 *   rwx    one RWX buffer rewritten in place between calls, no system call
 *          in between (the last rewrite changes a single byte, and the one
 *          after that leaves no sensitive instruction at all);
 *   w^x    one buffer flipped RW -> RX -> RW -> RX with mprotect;
 *   fresh  a new RW mapping per snippet, made RX, run and unmapped (the
 *          next mmap usually gets the same address back).
 *
 * Every value a snippet returns is checked against the same instruction
 * run from ordinary compiled code, and printed. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "sample.h"

/* The snippets, in the SysV calling convention: argument in RDI, result in
 * RAX. */
static const uint8_t code_pushf[] = {
    0x9c,                               /* pushfq               */
    0x58,                               /* pop %rax             */
    0xc3,                               /* ret                  */
};
static const uint8_t code_sgdt[] = {
    0x0f, 0x01, 0x07,                   /* sgdt (%rdi)          */
    0xc3,                               /* ret                  */
};
/* SIDT differs from SGDT in ModRM.reg only (0F 01 /1 vs /0): byte 2. */
static const uint8_t code_sidt[] = {
    0x0f, 0x01, 0x0f,                   /* sidt (%rdi)          */
    0xc3,                               /* ret                  */
};
/* XOR first: in 64-bit mode SMSW r32 zero-extends on the CPU, but Linux's
 * UMIP emulation writes only the low 4 bytes of RAX. With the upper half
 * already 0 both give the same RAX. */
static const uint8_t code_smsw[] = {
    0x31, 0xc0,                         /* xor %eax, %eax       */
    0x0f, 0x01, 0xe0,                   /* smsw %eax            */
    0xc3,                               /* ret                  */
};
/* POPF that sets CF and DF, then PUSHF to read them back; CLD because the
 * ABI wants DF clear on return. */
static const uint8_t code_popf[] = {
    0x9c,                               /* pushfq               */
    0x66, 0x81, 0x0c, 0x24, 0x01, 0x04, /* orw $0x401, (%rsp)   */
    0x9d,                               /* popfq                */
    0x9c,                               /* pushfq               */
    0x58,                               /* pop %rax             */
    0xfc,                               /* cld                  */
    0xc3,                               /* ret                  */
};
static const uint8_t code_mov42[] = {
    0xb8, 0x2a, 0x00, 0x00, 0x00,       /* mov $42, %eax        */
    0xc3,                               /* ret                  */
};

#define BUF_SIZE 4096

typedef uint64_t (*jit_fn)(void *arg);

static void emit(uint8_t *buf, const uint8_t *code, size_t len)
{
    memcpy(buf, code, len);
    /* A no-op on x86, where stores to code are seen by the next fetch
     * after a jump; what a portable JIT calls anyway. */
    __builtin___clear_cache((char *)buf, (char *)buf + len);
}

static uint64_t run(uint8_t *buf, void *arg)
{
    return ((jit_fn)(uintptr_t)buf)(arg);
}

static void *map(int prot)
{
    void *p = mmap(NULL, BUF_SIZE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return NULL;
    }
    return p;
}

static int protect(void *p, int prot)
{
    if (mprotect(p, BUF_SIZE, prot) != 0) {
        perror("mprotect");
        return -1;
    }
    return 0;
}

/* The reference values, from compiled code rather than from the JIT. */
static uint64_t smsw_native(void)
{
    uint64_t v = 0;                 /* zeroed for the same reason as above */
    __asm__ volatile("smsw %0" : "+r"(v));
    return v;
}

static void print_pushf(const char *how, uint64_t f)
{
    printf("jit %s: pushf IF=%u IOPL=%u\n", how, flags_if(f), flags_iopl(f));
    CHECK(flags_if(f) == 1 && flags_iopl(f) == 0, "pushf image %#llx",
          (unsigned long long)f);
}

static void print_table(const char *how, const char *insn, table_reg got,
                        table_reg want)
{
    printf("jit %s: %s limit=0x%04x base=0x%0*llx\n", how, insn, got.limit,
           BASE_DIGITS, (unsigned long long)got.base);
    CHECK(got.limit == want.limit && got.base == want.base,
          "%s from the JIT differs from compiled code", insn);
}

static void print_smsw(const char *how, uint64_t v)
{
    printf("jit %s: smsw eax=0x%08llx\n", how, (unsigned long long)v);
    CHECK(v == (smsw_native() & 0xffffffffu), "smsw from the JIT differs");
}

/* One RWX buffer, rewritten in place: the monitor finds out only through
 * the write fault on the page it patched. */
static int jit_rwx(void)
{
    uint8_t *buf = map(PROT_READ | PROT_WRITE | PROT_EXEC);
    if (!buf)
        return -1;
    table_reg t;

    emit(buf, code_pushf, sizeof code_pushf);
    print_pushf("rwx", run(buf, NULL));

    emit(buf, code_sgdt, sizeof code_sgdt);
    run(buf, &t);
    print_table("rwx", "sgdt", t, sgdt());

    emit(buf, code_smsw, sizeof code_smsw);
    print_smsw("rwx", run(buf, NULL));

    /* SGDT back, then only its ModRM byte turned into SIDT's: a patch
     * over the first byte would hide the change from a monitor that does
     * not rescan the whole instruction. */
    emit(buf, code_sgdt, sizeof code_sgdt);
    run(buf, &t);
    buf[2] = code_sidt[2];
    run(buf, &t);
    print_table("rwx", "sidt (one byte rewritten)", t, sidt());

    /* Nothing sensitive left: a stale INT3 would now break plain code. */
    emit(buf, code_mov42, sizeof code_mov42);
    uint64_t v = run(buf, NULL);
    printf("jit rwx: mov eax=%llu\n", (unsigned long long)v);
    CHECK(v == 42, "mov $42 returned %llu", (unsigned long long)v);

    return munmap(buf, BUF_SIZE);
}

/* W^X: never writable and executable at once, as hardened JITs do. */
static int jit_wx(void)
{
    uint8_t *buf = map(PROT_READ | PROT_WRITE);
    if (!buf)
        return -1;

    emit(buf, code_popf, sizeof code_popf);
    if (protect(buf, PROT_READ | PROT_EXEC))
        return -1;
    uint64_t f = run(buf, NULL);
    printf("jit w^x: popf set CF=%u DF=%u; IF=%u IOPL=%u\n",
           (f & FLAGS_CF) ? 1 : 0, (f & FLAGS_DF) ? 1 : 0, flags_if(f),
           flags_iopl(f));
    CHECK((f & (FLAGS_CF | FLAGS_DF)) == (FLAGS_CF | FLAGS_DF),
          "popf did not set CF and DF: %#llx", (unsigned long long)f);
    CHECK(flags_if(f) == 1 && flags_iopl(f) == 0, "pushf image %#llx",
          (unsigned long long)f);

    if (protect(buf, PROT_READ | PROT_WRITE))
        return -1;
    emit(buf, code_sidt, sizeof code_sidt);
    if (protect(buf, PROT_READ | PROT_EXEC))
        return -1;
    table_reg t;
    run(buf, &t);
    print_table("w^x", "sidt", t, sidt());

    return munmap(buf, BUF_SIZE);
}

/* A fresh mapping per snippet: whatever the monitor knew about the last
 * one at this address is stale. */
static uint8_t *fresh(const uint8_t *code, size_t len)
{
    uint8_t *buf = map(PROT_READ | PROT_WRITE);
    if (!buf)
        return NULL;
    emit(buf, code, len);
    if (protect(buf, PROT_READ | PROT_EXEC))
        return NULL;
    return buf;
}

static int jit_fresh(void)
{
    uint8_t *buf;
    table_reg t;

    if (!(buf = fresh(code_pushf, sizeof code_pushf)))
        return -1;
    print_pushf("fresh", run(buf, NULL));
    munmap(buf, BUF_SIZE);

    if (!(buf = fresh(code_sgdt, sizeof code_sgdt)))
        return -1;
    run(buf, &t);
    print_table("fresh", "sgdt", t, sgdt());
    munmap(buf, BUF_SIZE);

    if (!(buf = fresh(code_smsw, sizeof code_smsw)))
        return -1;
    print_smsw("fresh", run(buf, NULL));
    munmap(buf, BUF_SIZE);

    /* And plain code again where SMSW was. */
    if (!(buf = fresh(code_mov42, sizeof code_mov42)))
        return -1;
    uint64_t v = run(buf, NULL);
    printf("jit fresh: mov eax=%llu\n", (unsigned long long)v);
    CHECK(v == 42, "mov $42 returned %llu", (unsigned long long)v);
    return munmap(buf, BUF_SIZE);
}

int main(void)
{
    if (jit_rwx() || jit_wx() || jit_fresh())
        return 2;
    printf("jit: done\n");
    return sample_status();
}
