/* popek — unit tests: jump patches and trampolines from the Zydis encoder,
 * checked by decoding what was emitted, and run on the CPU. */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include "popek/fastpath.h"
#include "popek/popek.h"
#include "popek/trampoline.h"

typedef struct insn {
    ZydisDecodedInstruction d;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
} insn;

static void decode(unsigned bits, const uint8_t *b, size_t n, insn *i)
{
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32,
                     bits == 64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32);
    cr_assert(ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, b, n, &i->d, i->ops)), "decodes");
}

enum { NO_OPERAND = ZYDIS_MAX_OPERAND_COUNT };

/* Decodes the instruction at b (address at), which must be want, and
 * returns the address its operand op reaches (branch target, memory
 * address; 0 for NO_OPERAND); *len gets its length. */
static uint64_t reach(unsigned bits, const uint8_t *b, size_t n, uint64_t at, ZydisMnemonic want,
                      unsigned op, uint8_t *len)
{
    insn i;
    decode(bits, b, n, &i);
    cr_assert_eq(i.d.mnemonic, want, "%s at 0x%llx, want %s", ZydisMnemonicGetString(i.d.mnemonic),
                 (unsigned long long)at, ZydisMnemonicGetString(want));
    ZyanU64 a = 0;
    if (op < i.d.operand_count_visible)
        cr_assert(ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&i.d, &i.ops[op], at, &a)));
    *len = i.d.length;
    return a;
}

/* A jump over code, its sites, and its trampoline once emitted. */
typedef struct fixture {
    unsigned bits;
    pk_jump j;
    pk_patch sites[4];
    size_t nsites;
    uint64_t page;          /* the vcpu page, for a fast-path trampoline, or 0 */
    uint8_t t[1024];
    size_t len;
} fixture;

static void setup(fixture *f, unsigned bits, uint64_t site, uint64_t tramp, const uint8_t *code,
                  uint8_t n)
{
    memset(f, 0, sizeof *f);
    f->bits = bits;
    f->j.site = site;
    f->j.trampoline = tramp;
    f->j.len = n;
    memcpy(f->j.bytes, code, n);
}

/* Makes the instruction at offset off a site. */
static void add_site(fixture *f, unsigned off, pk_class_id cls)
{
    insn i;
    decode(f->bits, f->j.bytes + off, f->j.len - off, &i);
    pk_patch *p = &f->sites[f->nsites++];
    p->site = f->j.site + off;
    p->len = i.d.length;
    memcpy(p->bytes, f->j.bytes + off, p->len);
    p->cls = cls;
    p->tactic = PK_TACTIC_JMP_DISPLACED;
}

/* Emits f's trampoline, checking that measuring agrees with emitting (size
 * and trampoline fields) and that pk_trampoline_check accepts it. */
static void emit(fixture *f, bool passthrough)
{
    pk_error err;
    size_t measured;
    uint64_t fields[4];
    cr_assert_eq(pk_trampoline_emit(&f->j, f->sites, f->nsites, f->bits, passthrough ? PK_TABLE_PASSTHROUGH : 0, f->page, NULL,
                                    &measured, &err), PK_OK, "%s", err.msg);
    for (size_t k = 0; k < f->nsites; k++) {
        fields[k] = f->sites[k].trampoline;
        f->sites[k].trampoline = 0;
    }
    memset(f->t, 0, sizeof f->t);
    cr_assert_eq(pk_trampoline_emit(&f->j, f->sites, f->nsites, f->bits, passthrough ? PK_TABLE_PASSTHROUGH : 0, f->page, f->t,
                                    &f->len, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(measured, f->len, "measured and emitted sizes agree");
    for (size_t k = 0; k < f->nsites; k++)
        cr_assert_eq(fields[k], f->sites[k].trampoline, "measuring sets the same fields");
    f->j.trampoline_len = (uint16_t)f->len;
    uint64_t counterparts[PK_JUMP_MAX_LEN];
    cr_assert_eq(pk_trampoline_check(&f->j, f->sites, f->nsites, f->bits, passthrough ? PK_TABLE_PASSTHROUGH : 0, f->page, f->t,
                                     f->len, counterparts, &err), PK_OK, "%s", err.msg);
    /* Resuming at the jump's first instruction goes on at the trampoline's
     * start; at a site, at the site's own counterpart: its INT3, or its
     * block before its INT3. */
    cr_assert_eq(counterparts[0], f->j.trampoline);
    for (size_t k = 0; k < f->nsites; k++) {
        uint64_t at = counterparts[f->sites[k].site - f->j.site];
        if (f->page)
            cr_assert_lt(at, f->sites[k].trampoline);
        else
            cr_assert_eq(at, f->sites[k].trampoline);
    }
}

/* The trampoline's instruction at *off, which must be want; returns the
 * address operand op reaches and moves *off past it. */
static uint64_t next(fixture *f, size_t *off, ZydisMnemonic want, unsigned op)
{
    uint8_t n;
    uint64_t a = reach(f->bits, f->t + *off, f->len - *off, f->j.trampoline + *off, want, op, &n);
    *off += n;
    return a;
}

/* The trampoline ends at *off with a jmp back after the jump. */
static void ends_with_jump_back(fixture *f, size_t off)
{
    cr_assert_eq(next(f, &off, ZYDIS_MNEMONIC_JMP, 0), f->j.site + f->j.len);
    cr_assert_eq(off, f->len, "nothing after the jump back");
}

/* ---- relocation ---------------------------------------------------------------- */

/* pushf, then a load from absolute address addr (code: 1 + n bytes), moved
 * into a trampoline at tramp, still reads addr. */
static void check_load(unsigned bits, uint64_t site, uint64_t tramp, const uint8_t *code,
                       uint8_t n, uint64_t addr)
{
    fixture f;
    setup(&f, bits, site, tramp, code, n);
    add_site(&f, 0, PK_CLASS_PUSHF);
    emit(&f, false);
    cr_assert_eq(f.sites[0].trampoline, tramp, "pushf's INT3 opens the trampoline");
    size_t off = 0;
    next(&f, &off, ZYDIS_MNEMONIC_INT3, NO_OPERAND);
    cr_assert_eq(next(&f, &off, ZYDIS_MNEMONIC_MOV, 1), addr, "the load reads the same address");
    ends_with_jump_back(&f, off);
}

Test(trampoline, rip_relative_load_reads_the_same_address_64)
{
    /* pushfq; mov rax, [rip+0x1234] */
    static const uint8_t code[] = { 0x9c, 0x48, 0x8b, 0x05, 0x34, 0x12, 0x00, 0x00 };
    check_load(64, 0x401000, 0x401000 + 0x7ff00000ull, code, sizeof code, 0x401008 + 0x1234);
    check_load(64, 0x7ff00000, 0x10000, code, sizeof code, 0x7ff00008 + 0x1234); /* backwards */
    check_load(64, 0xffffffff81000160, 0xffffffffa0000000, code, sizeof code,
               0xffffffff81000168 + 0x1234); /* kernel, top 2 GiB */
}

Test(trampoline, absolute_load_reads_the_same_address_32)
{
    /* pushfd; mov eax, [0x0804a010] */
    static const uint8_t code[] = { 0x9c, 0xa1, 0x10, 0xa0, 0x04, 0x08 };
    check_load(32, 0x8049000, 0x8049000 + 0x40000000, code, sizeof code, 0x804a010);
}

/* pushf; jz +0x10; nop; nop: the jz reaches site + 0x13 from the
 * trampoline, as rel32 when far and rel8 when near. */
static void check_jcc(unsigned bits, uint64_t site, uint64_t tramp, uint8_t want_len)
{
    static const uint8_t code[] = { 0x9c, 0x74, 0x10, 0x90, 0x90 };
    fixture f;
    setup(&f, bits, site, tramp, code, sizeof code);
    add_site(&f, 0, PK_CLASS_PUSHF);
    emit(&f, false);
    size_t off = 0;
    next(&f, &off, ZYDIS_MNEMONIC_INT3, NO_OPERAND);
    size_t at = off;
    cr_assert_eq(next(&f, &off, ZYDIS_MNEMONIC_JZ, 0), site + 0x13, "the same target");
    cr_assert_eq(off - at, want_len, "the encoder picked the width that reaches");
    next(&f, &off, ZYDIS_MNEMONIC_NOP, NO_OPERAND);
    next(&f, &off, ZYDIS_MNEMONIC_NOP, NO_OPERAND);
    ends_with_jump_back(&f, off);
}

Test(trampoline, displaced_jcc_reaches_the_same_target_64)
{
    check_jcc(64, 0x401000, 0x401000 + 0x40000000, 6);
    check_jcc(64, 0x401000, 0x401040, 2);
    check_jcc(64, 0x40000000, 0x1000, 6);
}

Test(trampoline, displaced_jcc_reaches_the_same_target_32)
{
    check_jcc(32, 0x8049000, 0x8049000 + 0x40000000, 6);
    check_jcc(32, 0x8049000, 0x8049040, 2);
}

/* pushf; cli; mov eax, 1 */
static const uint8_t two_sites[] = { 0x9c, 0xfa, 0xb8, 0x01, 0x00, 0x00, 0x00 };

static void check_two_sites(unsigned bits, bool passthrough)
{
    fixture f;
    setup(&f, bits, 0x401000, 0x20000000, two_sites, sizeof two_sites);
    add_site(&f, 0, PK_CLASS_PUSHF);
    add_site(&f, 1, PK_CLASS_CLI);
    emit(&f, passthrough);
    cr_assert_eq(f.sites[0].trampoline, 0x20000000);
    cr_assert_eq(f.sites[1].trampoline, 0x20000001);
    size_t off = 0;
    ZydisMnemonic pushf = bits == 64 ? ZYDIS_MNEMONIC_PUSHFQ : ZYDIS_MNEMONIC_PUSHFD;
    next(&f, &off, passthrough ? pushf : ZYDIS_MNEMONIC_INT3, NO_OPERAND);
    next(&f, &off, passthrough ? ZYDIS_MNEMONIC_CLI : ZYDIS_MNEMONIC_INT3, NO_OPERAND);
    next(&f, &off, ZYDIS_MNEMONIC_MOV, NO_OPERAND);
    ends_with_jump_back(&f, off);
}

Test(trampoline, two_sites_each_get_an_int3)
{
    check_two_sites(64, false);
    check_two_sites(32, false);
}

Test(trampoline, passthrough_copies_the_sites)
{
    check_two_sites(64, true);
    check_two_sites(32, true);

    /* sgdt [rip+0x100] as a site, copied to read the same address */
    static const uint8_t sgdt[] = { 0x0f, 0x01, 0x05, 0x00, 0x01, 0x00, 0x00 };
    fixture f;
    setup(&f, 64, 0x401000, 0x401000 + 0x7f000000, sgdt, sizeof sgdt);
    add_site(&f, 0, PK_CLASS_SGDT);
    f.sites[0].tactic = PK_TACTIC_JMP;
    emit(&f, true);
    size_t off = 0;
    cr_assert_eq(next(&f, &off, ZYDIS_MNEMONIC_SGDT, 0), 0x401107);
    ends_with_jump_back(&f, off);
}

/* ---- what cannot move ---------------------------------------------------------- */

static bool relocatable(unsigned bits, const uint8_t *b, size_t n, const char **why)
{
    insn i;
    decode(bits, b, n, &i);
    *why = NULL;
    return pk_relocatable(&i.d, 0x401000, bits, why);
}

#define REFUSED(bits, ...)                                                                \
    do {                                                                                  \
        static const uint8_t b_[] = { __VA_ARGS__ };                                      \
        const char *why_;                                                                 \
        cr_expect(!relocatable(bits, b_, sizeof b_, &why_), "%d-bit %s refused", bits,    \
                  #__VA_ARGS__);                                                          \
        cr_expect(why_ && *why_, "with a reason");                                        \
    } while (0)

#define MOVES(bits, ...)                                                                  \
    do {                                                                                  \
        static const uint8_t b_[] = { __VA_ARGS__ };                                      \
        const char *why_;                                                                 \
        cr_expect(relocatable(bits, b_, sizeof b_, &why_), "%d-bit %s moves (%s)", bits,  \
                  #__VA_ARGS__, why_ ? why_ : "");                                    \
    } while (0)

Test(trampoline, relocatable_refuses_what_cannot_move)
{
    REFUSED(64, 0xe8, 0x00, 0x00, 0x00, 0x00);             /* call rel32 */
    REFUSED(64, 0xff, 0xd0);                               /* call rax */
    REFUSED(64, 0xff, 0x15, 0x00, 0x01, 0x00, 0x00);       /* call [rip+0x100] */
    REFUSED(64, 0xe2, 0xfe);                               /* loop */
    REFUSED(64, 0xe1, 0xfe);                               /* loope */
    REFUSED(64, 0xe3, 0x00);                               /* jrcxz */
    REFUSED(64, 0xc7, 0xf8, 0x00, 0x00, 0x00, 0x00);       /* xbegin */
    REFUSED(64, 0x0f, 0x0b);                               /* ud2 */
    REFUSED(64, 0xcc);                                     /* int3 */
    REFUSED(64, 0x67, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00); /* mov eax, [eip+0x100] */
    REFUSED(32, 0xe8, 0x00, 0x00, 0x00, 0x00);             /* call rel32 */
    REFUSED(32, 0xe2, 0xfe);                               /* loop */
    REFUSED(32, 0xe3, 0x00);                               /* jecxz */
    REFUSED(32, 0x66, 0xe9, 0x00, 0x01);                   /* jmp rel16: truncates eip */
    REFUSED(32, 0x0f, 0x34);                               /* sysenter */

    MOVES(64, 0x9c);                                       /* pushfq */
    MOVES(64, 0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00);   /* mov rax, [rip+0x100] */
    MOVES(64, 0x74, 0x10);                                 /* jz */
    MOVES(64, 0xeb, 0x10);                                 /* jmp rel8 */
    MOVES(64, 0xff, 0xe0);                                 /* jmp rax */
    MOVES(64, 0x0f, 0x05);                                 /* syscall: rcx is clobbered anyway */
    MOVES(64, 0xf3, 0x48, 0xa5);                           /* rep movsq */
    MOVES(64, 0xf0, 0x48, 0x0f, 0xb1, 0x0d, 0x00, 0x01, 0x00, 0x00); /* lock cmpxchg [rip+] */
    MOVES(64, 0xc5, 0xfd, 0x6f, 0x05, 0x00, 0x01, 0x00, 0x00); /* vmovdqa ymm0, [rip+] */
    MOVES(64, 0x62, 0xf1, 0x7c, 0x48, 0x28, 0x05, 0x00, 0x01, 0x00, 0x00); /* vmovaps zmm0 */
    MOVES(32, 0x9c);                                       /* pushfd */
    MOVES(32, 0x0f, 0x84, 0x00, 0x01, 0x00, 0x00);         /* jz rel32 */

    const char *why;
    insn i;
    decode(64, (const uint8_t[]){ 0x9c }, 1, &i);
    cr_expect(!pk_relocatable(&i.d, 0x7c00, 16, &why), "16-bit code");
}

Test(trampoline, emit_never_accepts_what_the_encoder_breaks)
{
    /* pushfq; pfadd mm0, [rip+1]: Zydis 4.0 writes a 3DNow! instruction's
     * displacement one byte early. Refused, or, with a fixed Zydis, moved
     * to read the same address. */
    static const uint8_t code[] = { 0x9c, 0x0f, 0x0f, 0x05, 0x01, 0x00, 0x00, 0x00, 0x9e };
    fixture f;
    setup(&f, 64, 0x401000, 0x50000000, code, sizeof code);
    add_site(&f, 0, PK_CLASS_PUSHF);
    pk_error err;
    size_t len;
    if (pk_trampoline_emit(&f.j, f.sites, 1, 64, false, 0, NULL, &len, &err) != PK_OK) {
        cr_assert(strstr(err.msg, "pfadd") && strstr(err.msg, "encoder"), "%s", err.msg);
        return;
    }
    emit(&f, false);
    size_t off = 1;
    cr_assert_eq(next(&f, &off, ZYDIS_MNEMONIC_PFADD, 1), 0x40100a);
}

/* Emitting j (site at its start) fails with status and a message naming
 * the culprit. */
static void emit_fails(unsigned bits, uint64_t site, uint64_t tramp, const uint8_t *code,
                       uint8_t n, pk_status status, const char *named)
{
    fixture f;
    setup(&f, bits, site, tramp, code, n);
    add_site(&f, 0, PK_CLASS_PUSHF);
    pk_error err;
    size_t len = 1;
    cr_assert_eq(pk_trampoline_emit(&f.j, f.sites, f.nsites, bits, false, 0, NULL, &len, &err),
                 status, "%s", err.msg);
    cr_assert_eq(len, 0);
    cr_assert(strstr(err.msg, named), "'%s' names '%s'", err.msg, named);
}

Test(trampoline, emit_refuses_what_cannot_move_or_reach)
{
    /* a call that does not end the jump would return into the trampoline */
    static const uint8_t call[] = { 0x9c, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x90 };
    emit_fails(64, 0x401000, 0x402000, call, sizeof call, PK_ERR_UNSUPPORTED, "call");
    /* one that does, in 32-bit code, where no RIP-relative lea finds it */
    emit_fails(32, 0x401000, 0x402000, call, sizeof call - 1, PK_ERR_UNSUPPORTED, "call");
    /* pushfq; mov rax, [rip+0x1234], with the trampoline 4 GiB away */
    static const uint8_t load[] = { 0x9c, 0x48, 0x8b, 0x05, 0x34, 0x12, 0x00, 0x00 };
    emit_fails(64, 0x401000, 0x401000 + (4ull << 30), load, sizeof load, PK_ERR_UNSUPPORTED,
               "mov rax");
    static const uint8_t jz[] = { 0x9c, 0x74, 0x10, 0x90, 0x90 };
    emit_fails(64, 0x401000, 0x401000 + (4ull << 30), jz, sizeof jz, PK_ERR_UNSUPPORTED, "jz");
    /* pushf; jz +1 lands on the second nop, inside the jump's INT3 fill */
    static const uint8_t inside[] = { 0x9c, 0x74, 0x01, 0x90, 0x90 };
    emit_fails(64, 0x401000, 0x402000, inside, sizeof inside, PK_ERR_UNSUPPORTED,
               "into the jump");
    /* the jump back cannot reach */
    static const uint8_t nops[] = { 0x9c, 0x90, 0x90, 0x90, 0x90 };
    emit_fails(64, 0x401000, 0x401000 + (4ull << 30), nops, sizeof nops, PK_ERR_UNSUPPORTED,
               "jump back");
    emit_fails(16, 0x7c00, 0x8000, nops, sizeof nops, PK_ERR_UNSUPPORTED, "32- or 64-bit");
}

Test(trampoline, emit_refuses_sites_that_are_not_the_jumps)
{
    static const uint8_t load[] = { 0x9c, 0x48, 0x8b, 0x05, 0x34, 0x12, 0x00, 0x00 };
    pk_error err;
    size_t len;
    fixture f;
    setup(&f, 64, 0x401000, 0x402000, load, sizeof load);
    cr_expect_eq(pk_trampoline_emit(&f.j, f.sites, 0, 64, false, 0, NULL, &len, &err), PK_ERR_USAGE,
                 "no site in the jump");
    add_site(&f, 0, PK_CLASS_PUSHF);
    f.sites[1] = f.sites[0];
    f.sites[1].site += 2; /* inside the mov */
    cr_expect_eq(pk_trampoline_emit(&f.j, f.sites, 2, 64, false, 0, NULL, &len, &err), PK_ERR_USAGE,
                 "a site off the instruction boundaries");
    f.sites[1].site = 0x401008;
    cr_expect_eq(pk_trampoline_emit(&f.j, f.sites, 2, 64, false, 0, NULL, &len, &err), PK_ERR_USAGE,
                 "a site past the jump");
    f.sites[0].bytes[0] = 0x9d;
    cr_expect_eq(pk_trampoline_emit(&f.j, f.sites, 1, 64, false, 0, NULL, &len, &err), PK_ERR_USAGE,
                 "a site with other bytes");
    f.sites[0].bytes[0] = 0x9c;
    f.j.len = 6; /* the mov no longer ends inside */
    cr_expect_eq(pk_trampoline_emit(&f.j, f.sites, 1, 64, false, 0, NULL, &len, &err), PK_ERR_USAGE,
                 "%s", err.msg);
    f.j.len = 4;
    cr_expect_eq(pk_trampoline_emit(&f.j, f.sites, 1, 64, false, 0, NULL, &len, &err), PK_ERR_USAGE,
                 "shorter than a jmp");
}

/* ---- the jump ------------------------------------------------------------------ */

static void check_jump(unsigned bits, uint64_t site, uint64_t tramp)
{
    pk_jump j = { .site = site, .trampoline = tramp, .len = 7 };
    uint8_t code[7];
    pk_error err;
    cr_assert_eq(pk_jump_emit(&j, bits, code, &err), PK_OK, "%s", err.msg);
    uint8_t len;
    cr_assert_eq(reach(bits, code, sizeof code, site, ZYDIS_MNEMONIC_JMP, 0, &len), tramp);
    cr_assert_eq(len, 5);
    cr_assert_eq(code[5], 0xCC);
    cr_assert_eq(code[6], 0xCC);
}

Test(trampoline, jump_goes_there)
{
    check_jump(64, 0x401000, 0x40a000);
    check_jump(64, 0xffffffff81000160, 0xffffffff84200000);
    check_jump(64, 0x40a000, 0x401000);
    check_jump(32, 0x8049000, 0x80a0000);

    pk_jump j = { .site = 0x401000, .trampoline = 0x401000 + (1ull << 33), .len = 7 };
    uint8_t buf[PK_JUMP_MAX_LEN];
    pk_error err;
    cr_expect_eq(pk_jump_emit(&j, 64, buf, &err), PK_ERR_UNSUPPORTED, "out of rel32 reach");
    j.trampoline = 0x402000;
    cr_expect_eq(pk_jump_emit(&j, 16, buf, &err), PK_ERR_UNSUPPORTED, "16-bit code");
    j.len = 4;
    cr_expect_eq(pk_jump_emit(&j, 64, buf, &err), PK_ERR_UNSUPPORTED, "too short");
}

/* ---- checking ------------------------------------------------------------------ */

/* pushfq; mov rax, [rip+0x1234]; cli: two sites around a displaced load */
static void checked(fixture *f)
{
    static const uint8_t code[] = { 0x9c, 0x48, 0x8b, 0x05, 0x34, 0x12, 0x00, 0x00, 0xfa };
    setup(f, 64, 0x401000, 0x60000000, code, sizeof code);
    add_site(f, 0, PK_CLASS_PUSHF);
    add_site(f, 8, PK_CLASS_CLI);
    emit(f, false);
}

/* The check refuses f's trampoline (tramp_len bytes) with a message naming
 * the jump and what. */
static void rejected(fixture *f, size_t tramp_len, bool passthrough, const char *what)
{
    pk_error err;
    cr_assert_eq(pk_trampoline_check(&f->j, f->sites, f->nsites, 64, passthrough ? PK_TABLE_PASSTHROUGH : 0, 0, f->t, tramp_len,
                                     NULL, &err), PK_ERR_FORMAT, "refuses %s", what);
    cr_assert(strstr(err.msg, "jump at 0x401000") && strstr(err.msg, what), "'%s' names '%s'",
              err.msg, what);
}

Test(trampoline, check_rejects_a_tampered_trampoline)
{
    fixture f;
    checked(&f);
    f.t[1 + 3] ^= 0x10; /* the mov's displacement */
    rejected(&f, f.len, false, "operand 2");

    checked(&f);
    f.t[1 + 2] = 0x0d; /* mov rcx, [rip+...] */
    rejected(&f, f.len, false, "operand 1");

    checked(&f);
    f.t[f.len - 1] ^= 0x01; /* the jump back's rel32 */
    rejected(&f, f.len, false, "jump back");

    checked(&f);
    f.t[0] = 0x90; /* nop where pushf's INT3 was */
    rejected(&f, f.len, false, "not int3");

    checked(&f);
    f.sites[1].trampoline++;
    rejected(&f, f.len, false, "counterpart");

    checked(&f);
    f.t[f.len] = 0xcc; /* a byte past the jump back */
    rejected(&f, f.len + 1, false, "follow");

    checked(&f);
    rejected(&f, f.len - 1, false, "jump back");

    checked(&f);
    rejected(&f, 1, false, "no instruction");

    checked(&f);
    rejected(&f, f.len, true, "mnemonic"); /* INT3s where passthrough copies belong */

    checked(&f);
    f.nsites = 1; /* cli's INT3 stands for a displaced cli */
    rejected(&f, f.len, false, "mnemonic");

    /* pushfq; jz +0x10; nop; nop, its jz retargeted into the jump's fill */
    static const uint8_t jz[] = { 0x9c, 0x74, 0x10, 0x90, 0x90 };
    setup(&f, 64, 0x401000, 0x401100, jz, sizeof jz);
    add_site(&f, 0, PK_CLASS_PUSHF);
    emit(&f, false);
    cr_assert_eq(f.t[1], 0x0f, "jz rel32 at T+1");
    int32_t rel = (int32_t)(0x401004 - (0x401100 + 7));
    memcpy(f.t + 3, &rel, 4);
    rejected(&f, f.len, false, "branches into");
}

/* ---- on the CPU ---------------------------------------------------------------- */

static volatile uint64_t global = 0x1122334455667788;

/* A RW page at near + off or a little later, so that it is within rel32
 * reach of global. */
static uint8_t *page_near(uint64_t near, uint64_t off)
{
    uint64_t base = (near & ~0xfffull) + off;
    for (uint64_t a = base; a < base + (256ull << 20); a += 1ull << 20) {
        void *p = mmap((void *)a, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == (void *)a)
            return p;
        if (p != MAP_FAILED)
            munmap(p, 4096);
    }
    cr_assert_fail("no free page near 0x%llx", (unsigned long long)base);
    return NULL;
}

static void protect(uint8_t *page, int prot)
{
    cr_assert_eq(mprotect(page, 4096, prot), 0);
}

typedef uint64_t (*fn)(uint64_t);

/* Three functions to patch, each starting with pushfq:
 *   load(): flags & 0x202 (IF and the always-set bit 1) + global, read
 *           RIP-relatively: the jump covers pushfq and the load;
 *   pick(x): x ? x + 1 : 42: the jump covers pushfq, test and jz rel8;
 *   calls(): load(): the jump covers pushfq and the call, whose callee
 *           returns to the original code. */
enum { LOAD = 0, PICK = 0x40, CALLS = 0x80 };

static void write_functions(uint8_t *code)
{
    static const uint8_t load[] = {
        0x9c,                               /* pushfq */
        0x48, 0x8b, 0x05, 0, 0, 0, 0,       /* mov rax, [rip+global] */
        0x59,                               /* pop rcx */
        0x81, 0xe1, 0x02, 0x02, 0x00, 0x00, /* and ecx, 0x202 */
        0x48, 0x01, 0xc8,                   /* add rax, rcx */
        0xc3,                               /* ret */
    };
    static const uint8_t pick[] = {
        0x9c,                               /* pushfq */
        0x85, 0xff,                         /* test edi, edi */
        0x74, 0x05,                         /* jz +5 */
        0x59,                               /* pop rcx */
        0x8d, 0x47, 0x01,                   /* lea eax, [rdi+1] */
        0xc3,                               /* ret */
        0x59,                               /* pop rcx */
        0xb8, 0x2a, 0x00, 0x00, 0x00,       /* mov eax, 42 */
        0xc3,                               /* ret */
    };
    memcpy(code + LOAD, load, sizeof load);
    int32_t d = (int32_t)((uint64_t)(uintptr_t)&global - ((uint64_t)(uintptr_t)code + LOAD + 8));
    memcpy(code + LOAD + 4, &d, 4);
    memcpy(code + PICK, pick, sizeof pick);
    static const uint8_t calls[] = {
        0x9c,                               /* pushfq */
        0xe8, 0, 0, 0, 0,                   /* call load */
        0x59,                               /* pop rcx */
        0xc3,                               /* ret */
    };
    memcpy(code + CALLS, calls, sizeof calls);
    d = LOAD - (CALLS + 6);
    memcpy(code + CALLS + 2, &d, 4);
}

/* Patches the function at code + off with a jump of len bytes to a
 * trampoline at tramp + off, pushfq being its site. */
static void patch(uint8_t *code, uint8_t *tramp, unsigned off, uint8_t len, bool passthrough,
                  fixture *f)
{
    setup(f, 64, (uintptr_t)code + off, (uintptr_t)tramp + off, code + off, len);
    add_site(f, 0, PK_CLASS_PUSHF);
    emit(f, passthrough);
    memcpy(tramp + off, f->t, f->len);
    pk_error err;
    cr_assert_eq(pk_jump_emit(&f->j, 64, code + off, &err), PK_OK, "%s", err.msg);
}

/* Runs load and pick natively, patches them, and checks that they return
 * the same; global and the trampolines are ~1 GiB apart. */
static void run_patched(bool passthrough, fixture *f)
{
    uint8_t *code = page_near((uintptr_t)&global, 64ull << 20);
    uint8_t *tramp = page_near((uintptr_t)&global, 1ull << 30);
    write_functions(code);
    protect(code, PROT_READ | PROT_EXEC);
    fn load = (fn)(void *)(code + LOAD), pick = (fn)(void *)(code + PICK);
    fn calls = (fn)(void *)(code + CALLS);
    uint64_t want = global + 0x202;
    cr_assert_eq(load(0), want, "native");
    cr_assert_eq(pick(0), 42);
    cr_assert_eq(pick(5), 6);
    cr_assert_eq(calls(0), want);

    protect(code, PROT_READ | PROT_WRITE);
    patch(code, tramp, LOAD, 8, passthrough, &f[0]);
    patch(code, tramp, PICK, 5, passthrough, &f[1]);
    patch(code, tramp, CALLS, 6, passthrough, &f[2]);
    protect(code, PROT_READ | PROT_EXEC);
    protect(tramp, PROT_READ | PROT_EXEC);
    cr_assert_eq(code[LOAD + 5], 0xCC, "the jump's tail is int3");
    cr_assert_eq(load(0), want, "patched");
    cr_assert_eq(pick(0), 42, "patched, jz taken");
    cr_assert_eq(pick(5), 6, "patched, jz not taken");
    cr_assert_eq(calls(0), want, "patched, the call moved");
}

Test(trampoline, passthrough_trampolines_run_on_the_cpu)
{
    fixture f[3];
    run_patched(true, f);
}

/* A monitor in miniature: at a trampoline's INT3 it emulates pushfq and
 * resumes at the next byte. */
static volatile uint64_t traps[4];
static volatile unsigned ntraps;

static void emulate_pushf(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    greg_t *r = ((ucontext_t *)ctx)->uc_mcontext.gregs;
    if (ntraps < 4)
        traps[ntraps] = (uint64_t)r[REG_RIP];
    ntraps++;
    r[REG_RSP] -= 8;
    *(uint64_t *)r[REG_RSP] = (uint64_t)r[REG_EFL];
}

Test(trampoline, int3_trampolines_run_on_the_cpu)
{
    struct sigaction sa = { .sa_sigaction = emulate_pushf, .sa_flags = SA_SIGINFO };
    cr_assert_eq(sigaction(SIGTRAP, &sa, NULL), 0);
    fixture f[3];
    run_patched(false, f);
    cr_assert_eq(ntraps, 5, "one trap per patched pushfq run");
    cr_assert_eq(traps[0], f[0].sites[0].trampoline + 1, "the trap is at the site's INT3");
    cr_assert_eq(traps[1], f[1].sites[0].trampoline + 1);
    cr_assert_eq(traps[2], f[1].sites[0].trampoline + 1);
}

/* ---- fast-path sites ------------------------------------------------------------ */

/* In f's trampoline (emitted), the site k: its block from the start of its
 * counterpart, exactly what pk_fastpath_emit makes, then jmp +1 and the
 * INT3 its trampoline field names. */
static void expect_block(fixture *f, size_t k, uint64_t counterpart)
{
    insn i;
    decode(f->bits, f->sites[k].bytes, f->sites[k].len, &i);
    uint8_t want[512];
    size_t n;
    pk_error err;
    uint64_t int3 = f->sites[k].trampoline;
    cr_assert_eq(pk_fastpath_emit(&i.d, i.ops, f->bits, false, f->sites[k].site, counterpart, f->page,
                                  int3, want, &n, &err), PK_OK, "%s", err.msg);
    size_t off = counterpart - f->j.trampoline;
    cr_assert_eq(memcmp(f->t + off, want, n), 0, "site %zu's block", k);
    cr_assert_eq(counterpart + n + 2, int3, "the block, jmp rel8, then the INT3");
    cr_assert_eq(f->t[off + n], 0xEB);
    cr_assert_eq(f->t[off + n + 1], 0x01);
    cr_assert_eq(f->t[off + n + 2], 0xCC);
}

Test(trampoline, fast_path_sites_are_blocks_before_their_int3)
{
    /* pushfq; mov rax, [rip+0x1234]; cli; smsw eax: every site but the
     * load has a block (CLI too: it is patched). */
    static const uint8_t code64[] = { 0x9c, 0x48, 0x8b, 0x05, 0x34, 0x12, 0x00, 0x00, 0xfa,
                                      0x0f, 0x01, 0xe0 };
    fixture f;
    setup(&f, 64, 0x401000, 0x60000000, code64, sizeof code64);
    f.page = 0x5ffff000;
    add_site(&f, 0, PK_CLASS_PUSHF);
    add_site(&f, 8, PK_CLASS_CLI);
    add_site(&f, 9, PK_CLASS_SMSW);
    emit(&f, false);
    uint64_t counterparts[PK_JUMP_MAX_LEN];
    pk_error err;
    cr_assert_eq(pk_trampoline_check(&f.j, f.sites, f.nsites, 64, false, f.page, f.t, f.len,
                                     counterparts, &err), PK_OK, "%s", err.msg);
    expect_block(&f, 0, counterparts[0]);
    expect_block(&f, 1, counterparts[8]);
    expect_block(&f, 2, counterparts[9]);
    /* the load follows pushf's INT3, relocated */
    cr_assert_eq(counterparts[1], f.sites[0].trampoline + 1);

    /* 32-bit code: sgdt [ebx+4]; popfd, in one jump with a nop between */
    static const uint8_t code32[] = { 0x0f, 0x01, 0x43, 0x04, 0x90, 0x9d };
    setup(&f, 32, 0x101000, 0x140000, code32, sizeof code32);
    f.page = 0x13f000;
    add_site(&f, 0, PK_CLASS_SGDT);
    add_site(&f, 5, PK_CLASS_POPF);
    emit(&f, false);
    cr_assert_eq(pk_trampoline_check(&f.j, f.sites, f.nsites, 32, false, f.page, f.t, f.len,
                                     counterparts, &err), PK_OK, "%s", err.msg);
    expect_block(&f, 0, counterparts[0]);
    expect_block(&f, 1, counterparts[5]);
}

/* pk_trampoline_check refuses the fast-path trampoline of f as changed,
 * with a message that says what. */
static void fast_rejected(fixture *f, uint64_t page, const char *what)
{
    pk_error err;
    cr_assert_eq(pk_trampoline_check(&f->j, f->sites, f->nsites, f->bits, false, page, f->t,
                                     f->len, NULL, &err), PK_ERR_FORMAT, "refuses %s", what);
    cr_assert(strstr(err.msg, what), "'%s' names '%s'", err.msg, what);
}

Test(trampoline, check_rejects_a_tampered_fast_path)
{
    static const uint8_t code[] = { 0x9c, 0x48, 0x8b, 0x05, 0x34, 0x12, 0x00, 0x00, 0xfa };
    fixture f;
    setup(&f, 64, 0x401000, 0x60000000, code, sizeof code);
    f.page = 0x5ffff000;
    add_site(&f, 0, PK_CLASS_PUSHF);
    add_site(&f, 8, PK_CLASS_CLI);
    emit(&f, false);
    /* another page than the blocks address */
    fast_rejected(&f, f.page + 4096, "does not have its fast-path block");
    /* no page: a site must be a bare INT3 */
    fast_rejected(&f, 0, "names 0x60000039 as its trampoline");
    /* a byte of pushf's block */
    f.t[5] ^= 1;
    fast_rejected(&f, f.page, "does not have its fast-path block");
    f.t[5] ^= 1;
    /* a trampoline field that misses the INT3 */
    f.sites[1].trampoline--;
    fast_rejected(&f, f.page, "its block's INT3 is at");
    f.sites[1].trampoline++;
    /* a page out of reach of the code */
    fast_rejected(&f, 0x7f0000000000, "has no fast path with the vcpu page");
}
