/* popek — a fake guest for the emulation tests.
 *
 * Guest memory is one byte array at MEM_BASE; reads or writes that touch a
 * byte outside it fail, which pk_emulate turns into a virtual #PF. The
 * instruction bytes are decoded by Zydis from arrays in the tests (they do
 * not need to be in guest memory: the engine decodes, pk_emulate does not
 * fetch). The standard GDT below is written as raw descriptor quadwords,
 * laid out by hand from SDM vol. 3A figure 3-8; each test that relies on a
 * field says which. */
#ifndef POPEK_TESTS_EMU_FIXTURE_H
#define POPEK_TESTS_EMU_FIXTURE_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "popek/vcpu.h"

#define MEM_BASE 0x100000ull
#define MEM_SIZE 0x20000ull
#define GDT 0x101000ull
#define IDT 0x102000ull
#define TSS 0x10C000ull      /* 0x68 bytes + an 8 KiB I/O bitmap */
#define LDT 0x104000ull
#define DATA 0x105000ull
#define STACK_TOP 0x108000ull  /* the guest's rSP */
#define STACK0_TOP 0x10A000ull /* the ring-0 stack the TSS names */
#define OUTSIDE 0x300000ull    /* not guest memory */
#define CODE 0x400000ull       /* rip; the code itself is not read */

static uint8_t ram[MEM_SIZE];
static pk_vcpu V;
static pk_regs R;
static ZydisDecodedInstruction I;
static ZydisDecodedOperand OPS[ZYDIS_MAX_OPERAND_COUNT];

static bool fake_read(void *ctx, uint64_t addr, void *buf, size_t n)
{
    (void)ctx;
    if (addr < MEM_BASE || addr + n > MEM_BASE + MEM_SIZE || addr + n < addr)
        return false;
    memcpy(buf, ram + (addr - MEM_BASE), n);
    return true;
}

static bool fake_write(void *ctx, uint64_t addr, const void *buf, size_t n)
{
    (void)ctx;
    if (addr < MEM_BASE || addr + n > MEM_BASE + MEM_SIZE || addr + n < addr)
        return false;
    memcpy(ram + (addr - MEM_BASE), buf, n);
    return true;
}

static const pk_guest_mem MEM = { NULL, fake_read, fake_write };

static inline uint8_t *at(uint64_t addr)
{
    cr_assert(addr >= MEM_BASE && addr < MEM_BASE + MEM_SIZE);
    return ram + (addr - MEM_BASE);
}

static inline uint64_t rd(uint64_t addr, unsigned n)
{
    uint64_t v = 0;
    memcpy(&v, at(addr), n);
    return v;
}

static inline void wr(uint64_t addr, uint64_t v, unsigned n)
{
    memcpy(at(addr), &v, n);
}

/* Descriptors, as the quadword the table holds. */
enum {
    SEL_CODE0 = 0x08,   /* 00CF9A00_0000FFFF: code, exec/read, DPL 0, 32-bit, 4 GiB */
    SEL_DATA0 = 0x10,   /* 00CF9200_0000FFFF: data, read/write, DPL 0 */
    SEL_CODE3 = 0x18,   /* 00CFFA00_0000FFFF: code, DPL 3 */
    SEL_DATA3 = 0x20,   /* 00CFF200_0000FFFF: data, DPL 3 */
    SEL_TSS = 0x28,     /* 32-bit TSS, available (type 9), base TSS, limit 0x2067 */
    SEL_LDTD = 0x30,    /* LDT (type 2) at LDT, limit 0x17 */
    SEL_NP = 0x38,      /* 00CF1200_0000FFFF: data DPL 0, not present */
    SEL_CONF0 = 0x40,   /* 00CF9E00_0000FFFF: conforming code, readable, DPL 0 */
    SEL_CODE64 = 0x48,  /* 00AF9A00_0000FFFF: 64-bit code (L=1), DPL 0 */
    SEL_CODE64_3 = 0x50,/* 00AFFA00_0000FFFF: 64-bit code, DPL 3 */
    SEL_BYTES = 0x58,   /* 12409234_56781234: data DPL 0, byte granular,
                           base 0x12345678, limit 0x01234 (G=0, B=1) */
    SEL_XONLY = 0x60,   /* 00CF9800_0000FFFF: code, execute-only, DPL 0 */
    SEL_CALLGATE = 0x68,/* 0000EC00_00080000: 32-bit call gate, DPL 3 */
    SEL_CODE16 = 0x70,  /* 000F9A00_0000FFFF: 16-bit code (D=0), DPL 0 */
    SEL_RO3 = 0x78,     /* 00CFF000_0000FFFF: data, read-only, DPL 3 */
    GDT_LIMIT = 0x7F,
};

static inline void gdt_set(unsigned sel, uint64_t desc)
{
    wr(GDT + (sel & ~7u), desc, 8);
}

static inline void standard_gdt(void)
{
    gdt_set(SEL_CODE0, 0x00CF9A000000FFFFull);
    gdt_set(SEL_DATA0, 0x00CF92000000FFFFull);
    gdt_set(SEL_CODE3, 0x00CFFA000000FFFFull);
    gdt_set(SEL_DATA3, 0x00CFF2000000FFFFull);
    /* base 0x0010C000: bytes 2-4 = 00 C0 10, byte 7 = 00; limit 0x2067 */
    gdt_set(SEL_TSS, 0x00008910C0002067ull);
    /* base 0x00104000, limit 0x17, type 2, P */
    gdt_set(SEL_LDTD, 0x0000821040000017ull);
    gdt_set(SEL_NP, 0x00CF12000000FFFFull);
    gdt_set(SEL_CONF0, 0x00CF9E000000FFFFull);
    gdt_set(SEL_CODE64, 0x00AF9A000000FFFFull);
    gdt_set(SEL_CODE64_3, 0x00AFFA000000FFFFull);
    gdt_set(SEL_BYTES, 0x1240923456781234ull);
    gdt_set(SEL_XONLY, 0x00CF98000000FFFFull);
    gdt_set(SEL_CALLGATE, 0x0000EC0000080000ull);
    gdt_set(SEL_CODE16, 0x000F9A000000FFFFull);
    gdt_set(SEL_RO3, 0x00CFF0000000FFFFull);
    V.gdtr.base = GDT;
    V.gdtr.limit = GDT_LIMIT;
}

static inline void guest_reset(unsigned bits)
{
    memset(ram, 0, sizeof ram);
    pk_vcpu_reset(&V, bits);
    memset(&R, 0, sizeof R);
    R.rip = CODE;
    R.gpr[PK_RSP] = STACK_TOP;
    R.rflags = 0x202; /* the real flags of a Linux process: IF=1, bit 1 */
    standard_gdt();
}

static inline void setup32(void) { guest_reset(32); }
static inline void setup64(void) { guest_reset(64); }

static inline void decode(unsigned bits, const uint8_t *b, size_t n)
{
    ZydisDecoder dec;
    cr_assert(ZYAN_SUCCESS(ZydisDecoderInit(&dec,
        bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
        bits == 64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32)));
    cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, b, n, &I, OPS)), "decode failed");
    cr_assert_eq(I.length, n, "decoded %u of %zu bytes", I.length, n);
}

static inline pk_emu_result emulate_bytes(const uint8_t *b, size_t n)
{
    decode(V.bits, b, n);
    return pk_emulate(&I, OPS, &V, &R, &MEM);
}

#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, sizeof((const uint8_t[]){ __VA_ARGS__ })
/* Emulates the instruction whose bytes follow, in V's mode. */
#define EMU(...) emulate_bytes(BYTES(__VA_ARGS__))

/* Expectations on a result. */
#define expect_done(r) cr_assert_eq((r).status, PK_EMU_DONE, "status %d (%s)", (r).status, (r).effect)
#define expect_fault(r, vec, ec)                                                   \
    do {                                                                           \
        cr_assert_eq((r).status, PK_EMU_FAULT, "status %d (%s)", (r).status, (r).effect); \
        cr_assert_eq((r).fault.vector, (vec), "vector %u", (r).fault.vector);     \
        cr_assert_eq((r).fault.error_code, (uint32_t)(ec), "error code 0x%x",     \
                     (r).fault.error_code);                                        \
    } while (0)
#define expect_unsupported(r) cr_assert_eq((r).status, PK_EMU_UNSUPPORTED, "status %d", (r).status)

/* Runs at virtual CPL 3 with ring-3 CS/SS (as after an IRET to user mode). */
static inline void enter_ring3(void)
{
    V.cpl = 3;
    V.seg[PK_CS].selector = SEL_CODE3 | 3;
    V.seg[PK_CS].attributes = 0xC0FB;
    V.seg[PK_SS].selector = SEL_DATA3 | 3;
    V.seg[PK_SS].attributes = 0xC0F3;
}

#endif
