/* popek — unit tests: the patch table's format, its rules, and checking and
 * restoring the code it describes. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "popek/popek.h"

/* A small table of each kind of entry, at base (code) and tramp:
 *
 *   base+0x00  sidt [rax]         int3
 *   base+0x10  sgdt [disp32]      jmp            jump 0: 7 bytes -> tramp
 *   base+0x20  pushf              jmp+displaced  jump 1: 5 bytes -> tramp+0x10
 *   base+0x21  mov eax, [rbp+8]   displaced
 *   base+0x24  popf               jmp+displaced
 *
 * Each trampoline starts with INT3 for its first site; jump 1's has the
 * relocated mov at +1 and popf's INT3 at +4. */
struct sample {
    pk_patch p[4];
    pk_jump j[2];
    pk_patch_table t;
};

static void sample_init(struct sample *s, unsigned bits, uint64_t base, uint64_t tramp)
{
    memset(s, 0, sizeof *s);
    s->p[0] = (pk_patch){ .site = base, .len = 3, .bytes = { 0x0f, 0x01, 0x08 },
                          .cls = PK_CLASS_SIDT, .tactic = PK_TACTIC_INT3 };
    s->p[1] = (pk_patch){ .site = base + 0x10, .len = 7,
                          .bytes = { 0x0f, 0x01, 0x05, 0x78, 0x56, 0x34, 0x12 },
                          .cls = PK_CLASS_SGDT, .tactic = PK_TACTIC_JMP, .trampoline = tramp };
    s->p[2] = (pk_patch){ .site = base + 0x20, .len = 1, .bytes = { 0x9c }, .cls = PK_CLASS_PUSHF,
                          .tactic = PK_TACTIC_JMP_DISPLACED, .trampoline = tramp + 0x10 };
    s->p[3] = (pk_patch){ .site = base + 0x24, .len = 1, .bytes = { 0x9d }, .cls = PK_CLASS_POPF,
                          .tactic = PK_TACTIC_JMP_DISPLACED, .trampoline = tramp + 0x14 };
    s->j[0] = (pk_jump){ .site = base + 0x10, .trampoline = tramp, .trampoline_len = 6, .len = 7,
                         .bytes = { 0x0f, 0x01, 0x05, 0x78, 0x56, 0x34, 0x12 } };
    s->j[1] = (pk_jump){ .site = base + 0x20, .trampoline = tramp + 0x10, .trampoline_len = 10,
                         .len = 5, .bytes = { 0x9c, 0x8b, 0x45, 0x08, 0x9d } };
    s->t = (pk_patch_table){ .bits = bits, .vcpu_page = 0x7fff0000, .patches = s->p, .count = 4,
                             .jumps = s->j, .njumps = 2 };
}

enum { BASE = 0x401000, TRAMP = 0x500000 };
#define KBASE 0xffffffff81000000ull
#define KTRAMP 0xffffffff90000000ull

static uint8_t *encode(const pk_patch_table *t, size_t *len)
{
    uint8_t *buf;
    pk_error err;
    cr_assert_eq(pk_patch_table_encode(t, &buf, len, &err), PK_OK, "%s", err.msg);
    return buf;
}

static void put(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The bytes docs/patch-table.md draws for t, written without the checks
 * encode makes: decode's input for tables that break a rule. */
static uint8_t *craft(const pk_patch_table *t, size_t *len)
{
    *len = 32 + t->count * 56 + t->njumps * 48;
    uint8_t *b = calloc(1, *len);
    memcpy(b, "POPEKPT", 8);
    put(b + 8, 1, 2);
    b[10] = (uint8_t)t->bits;
    b[11] = (uint8_t)t->flags;
    put(b + 12, t->count, 4);
    put(b + 16, t->vcpu_page, 8);
    put(b + 24, 56, 4);
    put(b + 28, t->njumps, 4);
    for (size_t i = 0; i < t->count; i++) {
        const pk_patch *p = &t->patches[i];
        uint8_t *e = b + 32 + i * 56;
        put(e, p->site, 8);
        put(e + 8, p->trampoline, 8);
        e[16] = p->len;
        e[17] = (uint8_t)p->tactic;
        memcpy(e + 18, p->bytes, p->len < 15 ? p->len : 15);
        strcpy((char *)e + 33, pk_class_get(p->cls)->key);
    }
    for (size_t k = 0; k < t->njumps; k++) {
        const pk_jump *j = &t->jumps[k];
        uint8_t *e = b + 32 + t->count * 56 + k * 48;
        put(e, j->site, 8);
        put(e + 8, j->trampoline, 8);
        e[16] = j->len;
        put(e + 18, j->trampoline_len, 2);
        memcpy(e + 20, j->bytes, j->len < 19 ? j->len : 19);
    }
    return b;
}

/* ---- the format ------------------------------------------------------------------ */

Test(patch_table, round_trip)
{
    struct sample s;
    sample_init(&s, 64, KBASE, KTRAMP);
    size_t len, clen;
    uint8_t *buf = encode(&s.t, &len), *crafted = craft(&s.t, &clen);
    cr_assert_eq(len, 32 + 4 * 56 + 2 * 48);
    cr_assert_eq(clen, len);
    cr_assert_eq(memcmp(buf, crafted, len), 0, "encode writes the documented layout");
    pk_patch_table back;
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(back.bits, 64);
    cr_assert_eq(back.flags, 0);
    cr_assert_eq(back.vcpu_page, 0x7fff0000);
    cr_assert_eq(back.count, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(back.patches[i].site, s.p[i].site);
        cr_assert_eq(back.patches[i].trampoline, s.p[i].trampoline);
        cr_assert_eq(back.patches[i].len, s.p[i].len);
        cr_assert_eq(memcmp(back.patches[i].bytes, s.p[i].bytes, s.p[i].len), 0);
        cr_assert_eq(back.patches[i].cls, s.p[i].cls);
        cr_assert_eq(back.patches[i].tactic, s.p[i].tactic);
    }
    cr_assert_eq(back.njumps, 2);
    for (size_t k = 0; k < 2; k++) {
        cr_assert_eq(back.jumps[k].site, s.j[k].site);
        cr_assert_eq(back.jumps[k].trampoline, s.j[k].trampoline);
        cr_assert_eq(back.jumps[k].trampoline_len, s.j[k].trampoline_len);
        cr_assert_eq(back.jumps[k].len, s.j[k].len);
        cr_assert_eq(memcmp(back.jumps[k].bytes, s.j[k].bytes, s.j[k].len), 0);
    }
    cr_assert_eq(pk_patch_table_find(&back, KBASE + 0x10)->cls, PK_CLASS_SGDT);
    cr_assert_null(pk_patch_table_find(&back, KBASE + 0x11));
    cr_assert_null(pk_patch_table_find(&back, 0));
    cr_assert_eq(pk_patch_table_jump_at(&back, KBASE + 0x10), &back.jumps[0]);
    cr_assert_eq(pk_patch_table_jump_at(&back, KBASE + 0x16), &back.jumps[0]);
    cr_assert_eq(pk_patch_table_jump_at(&back, KBASE + 0x24), &back.jumps[1]);
    cr_assert_null(pk_patch_table_jump_at(&back, KBASE + 0x0f));
    cr_assert_null(pk_patch_table_jump_at(&back, KBASE + 0x17));
    cr_assert_null(pk_patch_table_jump_at(&back, KBASE + 0x25));
    cr_assert_null(pk_patch_table_jump_at(&back, 0));
    pk_patch_table_free(&back);
    free(buf);
    free(crafted);
}

Test(patch_table, passthrough_round_trip)
{
    struct sample s;
    sample_init(&s, 32, BASE, TRAMP);
    s.t.patches++; /* no int3 patch */
    s.t.count--;
    s.t.flags = PK_TABLE_PASSTHROUGH;
    size_t len;
    uint8_t *buf = encode(&s.t, &len);
    cr_assert_eq(buf[11], 1);
    pk_patch_table back;
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(back.flags, PK_TABLE_PASSTHROUGH);
    cr_assert_eq(back.bits, 32);
    cr_assert_eq(back.count, 3);
    cr_assert_eq(back.njumps, 2);
    pk_patch_table_free(&back);
    free(buf);
}

Test(patch_table, rows_are_stored_by_key)
{
    struct sample s;
    sample_init(&s, 64, KBASE, KTRAMP);
    size_t len;
    uint8_t *buf = encode(&s.t, &len);
    cr_assert_str_eq((const char *)buf + 32 + 33, "sidt");
    cr_assert_str_eq((const char *)buf + 32 + 56 + 33, "sgdt");
    free(buf);
}

Test(patch_table, empty_table)
{
    pk_patch_table t = { .bits = 32 }, back;
    size_t len;
    uint8_t *buf = encode(&t, &len);
    cr_assert_eq(len, 32);
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(back.count, 0);
    cr_assert_eq(back.njumps, 0);
    cr_assert_null(pk_patch_table_find(&back, 0));
    cr_assert_null(pk_patch_table_jump_at(&back, 0));
    pk_patch_table_free(&back);
    free(buf);
}

/* A table as popek wrote it before jumps existed: bytes 11 and 28..31
 * were reserved. It still decodes, and encodes back to the same bytes. */
Test(patch_table, int3_only_table_of_old_format)
{
    static const uint8_t old[32 + 56] = {
        'P', 'O', 'P', 'E', 'K', 'P', 'T', 0, 1, 0, 64, 0, 1, 0, 0, 0, /* v1, 64-bit, 1 entry */
        [24] = 56,                                                      /* entry size */
        [32] = 0x00, 0x10, 0x40,                                        /* site 0x401000 */
        [48] = 1, PK_TACTIC_INT3, 0x9c,                                 /* pushf, int3 */
        [65] = 'p', 'u', 's', 'h', 'f',
    };
    pk_patch_table t;
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(old, sizeof old, &t, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(t.count, 1);
    cr_assert_eq(t.njumps, 0);
    cr_assert_eq(t.flags, 0);
    cr_assert_eq(t.patches[0].site, 0x401000);
    cr_assert_eq(t.patches[0].cls, PK_CLASS_PUSHF);
    size_t len;
    uint8_t *buf = encode(&t, &len);
    cr_assert_eq(len, sizeof old);
    cr_assert_eq(memcmp(buf, old, len), 0);
    pk_patch_table_free(&t);
    free(buf);
}

/* Alternating int3 patches and one-site jumps: the rules and lookups over
 * a table of the size a large binary gives. */
Test(patch_table, many_entries)
{
    enum { N = 10000 };
    pk_patch *p = calloc(N, sizeof *p);
    pk_jump *j = calloc(N / 2, sizeof *j);
    for (size_t i = 0; i < N; i++) {
        uint64_t site = BASE + 8 * i;
        p[i] = (pk_patch){ .site = site, .len = 1, .bytes = { 0x9c }, .cls = PK_CLASS_PUSHF,
                           .tactic = PK_TACTIC_INT3 };
        if (i % 2) {
            p[i].tactic = PK_TACTIC_JMP_DISPLACED;
            p[i].trampoline = TRAMP + 16 * i;
            j[i / 2] = (pk_jump){ .site = site, .trampoline = TRAMP + 16 * i,
                                  .trampoline_len = 7, .len = 5,
                                  .bytes = { 0x9c, 0x90, 0x90, 0x90, 0x90 } };
        }
    }
    pk_patch_table t = { .bits = 64, .patches = p, .count = N, .jumps = j, .njumps = N / 2 },
                   back;
    size_t len;
    uint8_t *buf = encode(&t, &len);
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
    for (size_t i = 0; i < N; i++) {
        const pk_jump *at = pk_patch_table_jump_at(&back, BASE + 8 * i + 4);
        cr_assert_eq(at, i % 2 ? &back.jumps[i / 2] : NULL, "site %zu", i);
    }
    pk_patch_table_free(&back);
    free(buf);
    free(p);
    free(j);
}

/* ---- the rules ------------------------------------------------------------------- */

/* Expects encode to refuse s's table with PK_ERR_USAGE and decode to
 * refuse the same table's bytes with PK_ERR_FORMAT, both saying want. */
static void expect_refused(const struct sample *s, const char *want)
{
    uint8_t *buf;
    size_t len;
    pk_error err = { { 0 } };
    cr_assert_eq(pk_patch_table_encode(&s->t, &buf, &len, &err), PK_ERR_USAGE, "%s", want);
    cr_assert_null(buf);
    cr_assert(strstr(err.msg, want), "encode: '%s', want '%s'", err.msg, want);

    buf = craft(&s->t, &len);
    pk_patch_table back;
    memset(&err, 0, sizeof err);
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_ERR_FORMAT, "%s", want);
    cr_assert(strstr(err.msg, want), "decode: '%s', want '%s'", err.msg, want);
    cr_assert_null(back.patches);
    cr_assert_null(back.jumps);
    free(buf);
}

/* Breaks one rule in a fresh sample (in s) and expects both refusals. */
#define BROKEN(change, want)                                                   \
    do {                                                                       \
        sample_init(&s, 64, KBASE, KTRAMP);                                    \
        change;                                                                \
        expect_refused(&s, want);                                              \
    } while (0)

Test(patch_table, rules_for_patches)
{
    struct sample s;
    BROKEN(s.p[1].site = s.p[0].site + 2, "patch 1 at 0xffffffff81000002 overlaps");
    BROKEN(s.p[1].len = 16, "patch 1 at 0xffffffff81000010: instruction length 16");
    BROKEN(s.p[1].tactic = (pk_tactic)7, "patch 1 at 0xffffffff81000010: unknown tactic 7");
    BROKEN(s.p[1].trampoline = 0, "patch 1 at 0xffffffff81000010: jmp patch without");
    BROKEN(s.p[0].trampoline = KTRAMP, "patch 0 at 0xffffffff81000000: int3 patch with");
    BROKEN(s.p[3].site = KBASE + 0x25, "patch 3 at 0xffffffff81000025: jmp+displaced patch "
                                       "not inside a jump");
    BROKEN(s.p[1].len = 8, "patch 1 at 0xffffffff81000010: jmp patch not inside a jump");
    BROKEN(s.p[2].bytes[0] = 0x9d, "patch 2 at 0xffffffff81000020: original bytes differ "
                                   "from jump 1's");
    BROKEN(s.p[2].trampoline = KTRAMP + 0x0f, "patch 2 at 0xffffffff81000020: trampoline "
                                              "0xffffffff9000000f is not in jump 1's");
    BROKEN(s.p[3].trampoline = KTRAMP + 0x1a, "trampoline 0xffffffff9000001a is not in jump");
    BROKEN(s.p[1].tactic = PK_TACTIC_JMP_DISPLACED,
           "patch 1 at 0xffffffff81000010: jmp+displaced patch alone in jump 0");
    BROKEN(s.p[2].tactic = PK_TACTIC_JMP, "patch 2 at 0xffffffff81000020: jmp patch not "
                                          "alone in jump 1");
    BROKEN((s.p[3].tactic = PK_TACTIC_INT3, s.p[3].trampoline = 0),
           "patch 3 at 0xffffffff81000024: int3 patch inside jump 1");
    BROKEN(s.t.flags = PK_TABLE_PASSTHROUGH, "patch 0 at 0xffffffff81000000: int3 in a "
                                             "passthrough table");
    BROKEN(s.t.bits = 8, "bitness");
}

Test(patch_table, rules_for_jumps)
{
    struct sample s;
    BROKEN(s.j[1].site = KBASE + 0x14, "jump 1 at 0xffffffff81000014 overlaps");
    BROKEN(s.j[1].site = KBASE + 0x08, "jump 1 at 0xffffffff81000008 overlaps or precedes");
    BROKEN(s.j[0].len = 4, "jump 0 at 0xffffffff81000010: length 4 is not 5..19");
    BROKEN(s.j[0].len = 20, "jump 0 at 0xffffffff81000010: length 20 is not 5..19");
    BROKEN(s.j[0].trampoline = 0, "jump 0 at 0xffffffff81000010: no trampoline");
    BROKEN(s.j[0].trampoline_len = 0, "jump 0 at 0xffffffff81000010: no trampoline");
    BROKEN(s.j[1].site = UINT64_MAX - 2, "jump 1 at 0xfffffffffffffffd: wraps");
    /* jump 0 without its site: patch 1 dropped */
    BROKEN((memmove(&s.p[1], &s.p[2], 2 * sizeof s.p[0]), s.t.count = 3),
           "jump 0 at 0xffffffff81000010: no patched site inside it");
    /* A jump may start at an instruction before its site. */
    sample_init(&s, 64, KBASE, KTRAMP);
    s.j[0].site = KBASE + 0x0c;
    s.j[0].len = 11;
    memmove(s.j[0].bytes + 4, s.j[0].bytes, 7);
    memcpy(s.j[0].bytes, (uint8_t[]){ 0x48, 0x83, 0xc0, 0x01 }, 4); /* add rax, 1 */
    s.p[1].tactic = PK_TACTIC_JMP_DISPLACED;
    size_t len;
    free(encode(&s.t, &len));
}
#undef BROKEN

Test(patch_table, flags)
{
    struct sample s;
    sample_init(&s, 64, KBASE, KTRAMP);
    uint8_t *buf;
    size_t len;
    pk_error err;
    /* An unknown flag is refused both ways. */
    s.t.flags = 8;
    cr_assert_eq(pk_patch_table_encode(&s.t, &buf, &len, &err), PK_ERR_USAGE);
    buf = craft(&s.t, &len);
    pk_patch_table back;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_ERR_UNSUPPORTED);
    cr_assert(strstr(err.msg, "flags 0x8"), "%s", err.msg);
    free(buf);
    /* "mapped" and "user" round-trip; passthrough with mapped makes no
     * sense. */
    static const unsigned kept[] = { PK_TABLE_MAPPED, PK_TABLE_USER };
    for (int i = 0; i < 2; i++) {
        s.t.flags = kept[i];
        s.t.vcpu_page = 0x7000;
        buf = encode(&s.t, &len);
        cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
        cr_assert_eq(back.flags, kept[i]);
        cr_assert_eq(back.vcpu_page, 0x7000);
        pk_patch_table_free(&back);
        free(buf);
    }
    s.t.flags = PK_TABLE_MAPPED | PK_TABLE_PASSTHROUGH;
    cr_assert_eq(pk_patch_table_encode(&s.t, &buf, &len, &err), PK_ERR_USAGE);
}

/* Corrupts one byte of the encoded sample and expects decode to fail with
 * the given status. */
static void expect_corrupt(size_t at, uint8_t value, pk_status want)
{
    struct sample s;
    sample_init(&s, 64, KBASE, KTRAMP);
    size_t len;
    uint8_t *buf = encode(&s.t, &len);
    buf[at] = value;
    pk_patch_table back;
    pk_error err = { { 0 } };
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), want,
                 "byte %zu = 0x%02x: %s", at, value, err.msg);
    cr_assert_neq(err.msg[0], 0);
    cr_assert_null(back.patches);
    free(buf);
}

Test(patch_table, decode_refuses_corrupt_tables)
{
    expect_corrupt(0, 'X', PK_ERR_FORMAT);                  /* magic */
    expect_corrupt(8, 2, PK_ERR_UNSUPPORTED);               /* version */
    expect_corrupt(10, 63, PK_ERR_FORMAT);                  /* bitness */
    expect_corrupt(12, 5, PK_ERR_FORMAT);                   /* count past the end */
    expect_corrupt(28, 4, PK_ERR_FORMAT);                   /* jumps past the end */
    expect_corrupt(24, 48, PK_ERR_FORMAT);                  /* entry size */
    expect_corrupt(32 + 16, 0, PK_ERR_FORMAT);              /* length 0 */
    expect_corrupt(32 + 17, 9, PK_ERR_FORMAT);              /* tactic */
    expect_corrupt(32 + 33, 'q', PK_ERR_UNSUPPORTED);       /* row "qidt" */
    expect_corrupt(32 + 56 + 7, 0x00, PK_ERR_FORMAT);       /* sites out of order */
    expect_corrupt(32 + 4 * 56 + 48 + 7, 0x00, PK_ERR_FORMAT); /* jumps out of order */

    struct sample s;
    sample_init(&s, 64, KBASE, KTRAMP);
    size_t len;
    uint8_t *buf = encode(&s.t, &len);
    pk_patch_table back;
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len - 1, &back, &err), PK_ERR_FORMAT);
    cr_assert_eq(pk_patch_table_decode(buf, 31, &back, &err), PK_ERR_FORMAT);
    free(buf);
}

/* ---- the patched code ------------------------------------------------------------ */

/* size bytes of code at base. */
struct code {
    uint64_t base;
    size_t size;
    uint8_t b[0x30];
};

static uint8_t *code_at(void *ctx, uint64_t addr, size_t len)
{
    struct code *c = ctx;
    return addr >= c->base && len <= c->size && addr - c->base <= c->size - len
               ? c->b + (addr - c->base)
               : NULL;
}

/* jmp rel32 at from (in bits-bit code) to to, from the Zydis encoder. */
static void put_jmp(unsigned bits, uint8_t *at, uint64_t from, uint64_t to)
{
    ZydisEncoderRequest req;
    memset(&req, 0, sizeof req);
    req.machine_mode = bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64 : ZYDIS_MACHINE_MODE_LEGACY_32;
    req.mnemonic = ZYDIS_MNEMONIC_JMP;
    req.branch_type = ZYDIS_BRANCH_TYPE_NEAR;
    req.branch_width = ZYDIS_BRANCH_WIDTH_32;
    req.operand_count = 1;
    req.operands[0].type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
    req.operands[0].imm.u = to;
    ZyanUSize n = 5;
    cr_assert(ZYAN_SUCCESS(ZydisEncoderEncodeInstructionAbsolute(&req, at, &n, from)));
    cr_assert_eq(n, 5);
}

/* s's sample code: *orig as before patching, *patched as the table says. */
static void sample_code(const struct sample *s, struct code *orig, struct code *patched)
{
    uint64_t base = s->p[0].site;
    orig->base = base;
    orig->size = sizeof orig->b;
    memset(orig->b, 0x90, sizeof orig->b);
    memcpy(orig->b, s->p[0].bytes, s->p[0].len);
    for (size_t k = 0; k < s->t.njumps; k++)
        memcpy(orig->b + (s->j[k].site - base), s->j[k].bytes, s->j[k].len);
    *patched = *orig;
    patched->b[0] = 0xCC;
    for (size_t k = 0; k < s->t.njumps; k++) {
        uint8_t *at = patched->b + (s->j[k].site - base);
        put_jmp(s->t.bits, at, s->j[k].site, s->j[k].trampoline);
        memset(at + 5, 0xCC, s->j[k].len - 5u);
    }
}

/* Expects check_code to refuse c, saying want. */
static void expect_mismatch(const struct sample *s, struct code *c, const char *want)
{
    pk_error err = { { 0 } };
    cr_assert_eq(pk_patch_table_check_code(&s->t, code_at, c, &err), PK_ERR_FORMAT, "%s", want);
    cr_assert(strstr(err.msg, want), "'%s', want '%s'", err.msg, want);
}

static void check_and_restore(unsigned bits, uint64_t base, uint64_t tramp)
{
    struct sample s;
    sample_init(&s, bits, base, tramp);
    struct code orig, patched, c;
    sample_code(&s, &orig, &patched);
    pk_error err;
    c = patched;
    cr_assert_eq(pk_patch_table_check_code(&s.t, code_at, &c, &err), PK_OK, "%s", err.msg);
    pk_patch_table_restore_code(&s.t, code_at, &c);
    cr_assert_eq(memcmp(c.b, orig.b, sizeof c.b), 0, "the original code is back");
    expect_mismatch(&s, &c, "patch 0 at"); /* restored code is no longer patched */

    c = patched;
    put_jmp(bits, c.b + 0x10, base + 0x10, tramp + 1);
    expect_mismatch(&s, &c, "jump 0 at");
    expect_mismatch(&s, &c, "a jmp elsewhere");
    c = patched;
    c.b[0x16] = 0x90;
    expect_mismatch(&s, &c, "no int3 after the jmp");
    c = patched;
    c.b[0x20] = 0xEB; /* a short jmp */
    expect_mismatch(&s, &c, "jump 1 at");
    expect_mismatch(&s, &c, "no jmp rel32");
    c = patched;
    c.b[0] = orig.b[0];
    expect_mismatch(&s, &c, "patch 0 at");
    expect_mismatch(&s, &c, "does not match the file (int3 of the original sidt)");
    c = patched;
    c.b[2] = 0x09;
    expect_mismatch(&s, &c, "patch 0 at");
    c = patched;
    c.base = base + 1;
    expect_mismatch(&s, &c, "patch 0 at");
    expect_mismatch(&s, &c, "is not in code");
    c = patched;
    c.size = 0x24;
    expect_mismatch(&s, &c, "jump 1 at");
    expect_mismatch(&s, &c, "is not in code");
}

Test(patch_table, check_and_restore_code_64)
{
    check_and_restore(64, BASE, TRAMP);
    check_and_restore(64, KBASE, KTRAMP);
    check_and_restore(64, TRAMP, BASE); /* trampolines below the code */
}

Test(patch_table, check_and_restore_code_32)
{
    check_and_restore(32, BASE, TRAMP);
    check_and_restore(32, 0xc1000000, 0xc8000000);
}

Test(patch_table, check_code_refuses_jumps_in_16_bit_code)
{
    struct sample s;
    sample_init(&s, 16, 0x1000, 0x7000);
    struct code orig, patched;
    s.t.bits = 32; /* the jumps as 32-bit code has them */
    sample_code(&s, &orig, &patched);
    s.t.bits = 16;
    expect_mismatch(&s, &patched, "jumps need 32- or 64-bit code");
}
