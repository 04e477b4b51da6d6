/* popek — the patch table: encoding, decoding, lookup, and checking and
 * restoring the code a table describes.
 *
 * Little-endian, fixed-size records, so that a monitor (or a person with
 * xxd) reads it without a parser library; docs/patch-table.md draws it.
 * Rows are stored by key, not by their index in the catalog, so a table
 * stays readable after the catalog grows. */
#include "popek/patch.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <Zydis/Zydis.h>

enum {
    HEADER_SIZE = 32,
    ENTRY_SIZE = 56,
    JUMP_SIZE = 48,
    VERSION = 1,
    ROW_KEY_SIZE = 16,
    INT3 = 0xCC,
};

static const char magic[8] = "POPEKPT";

/* ---- little-endian fields ------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- rules both directions check ------------------------------------------------ */

const char *pk_tactic_name(pk_tactic tactic)
{
    switch (tactic) {
    case PK_TACTIC_INT3: return "int3";
    case PK_TACTIC_JMP: return "jmp";
    case PK_TACTIC_JMP_DISPLACED: return "jmp+displaced";
    }
    return "?";
}

static bool tactic_valid(pk_tactic tactic)
{
    return tactic == PK_TACTIC_INT3 || tactic == PK_TACTIC_JMP ||
           tactic == PK_TACTIC_JMP_DISPLACED;
}

static uint64_t jump_end(const pk_jump *j)
{
    return j->site + j->len;
}

/* Checks one patch, and that it follows prev (NULL for the first); bad is
 * the status to fail with (a caller's mistake, or a corrupt file). */
static pk_status check_patch(const pk_patch *p, const pk_patch *prev, size_t i, pk_error *err,
                             pk_status bad)
{
    unsigned long long at = p->site;
    if (p->len < 1 || p->len > 15)
        return pk_fail(err, bad, "patch %zu at 0x%llx: instruction length %u is not 1..15", i,
                       at, p->len);
    if (!pk_class_get(p->cls))
        return pk_fail(err, bad, "patch %zu at 0x%llx: no catalog row %d", i, at, (int)p->cls);
    if (!tactic_valid(p->tactic))
        return pk_fail(err, bad, "patch %zu at 0x%llx: unknown tactic %d", i, at,
                       (int)p->tactic);
    if ((p->tactic == PK_TACTIC_INT3) != (p->trampoline == 0))
        return pk_fail(err, bad, "patch %zu at 0x%llx: %s patch %s a trampoline", i, at,
                       pk_tactic_name(p->tactic),
                       p->tactic == PK_TACTIC_INT3 ? "with" : "without");
    if (p->site + p->len < p->site)
        return pk_fail(err, bad, "patch %zu at 0x%llx: site wraps around the address space", i,
                       at);
    if (prev && p->site < prev->site + prev->len)
        return pk_fail(err, bad, "patch %zu at 0x%llx overlaps or precedes the one before", i,
                       at);
    return PK_OK;
}

/* The same for one jump. */
static pk_status check_jump(const pk_jump *j, const pk_jump *prev, size_t k, pk_error *err,
                            pk_status bad)
{
    unsigned long long at = j->site;
    if (j->len < 5 || j->len > PK_JUMP_MAX_LEN)
        return pk_fail(err, bad, "jump %zu at 0x%llx: length %u is not 5..%d", k, at, j->len,
                       PK_JUMP_MAX_LEN);
    if (!j->trampoline || !j->trampoline_len)
        return pk_fail(err, bad, "jump %zu at 0x%llx: no trampoline", k, at);
    if (jump_end(j) < j->site || j->trampoline + j->trampoline_len < j->trampoline)
        return pk_fail(err, bad, "jump %zu at 0x%llx: wraps around the address space", k, at);
    if (prev && j->site < jump_end(prev))
        return pk_fail(err, bad, "jump %zu at 0x%llx overlaps or precedes the one before", k,
                       at);
    return PK_OK;
}

/* Checks that patches and jumps fit together (docs/patch-table.md lists
 * the rules). Both arrays are sorted and without overlaps, so one walk
 * over each suffices: tables run to 10^4 entries. */
static pk_status check_nesting(const pk_patch_table *t, pk_error *err, pk_status bad)
{
    size_t k = 0;
    for (size_t i = 0; i < t->count; i++) {
        const pk_patch *p = &t->patches[i];
        unsigned long long at = p->site;
        while (k < t->njumps && jump_end(&t->jumps[k]) <= p->site)
            k++;
        /* The first jump ending after the site: the only one it can lie in. */
        const pk_jump *j = k < t->njumps && t->jumps[k].site < p->site + p->len ? &t->jumps[k]
                                                                                 : NULL;
        if (p->tactic == PK_TACTIC_INT3) {
            if (t->flags & PK_TABLE_PASSTHROUGH)
                return pk_fail(err, bad, "patch %zu at 0x%llx: int3 in a passthrough table", i,
                               at);
            if (j)
                return pk_fail(err, bad, "patch %zu at 0x%llx: int3 patch inside jump %zu", i,
                               at, k);
            continue;
        }
        if (!j || j->site > p->site || p->site + p->len > jump_end(j))
            return pk_fail(err, bad, "patch %zu at 0x%llx: %s patch not inside a jump", i, at,
                           pk_tactic_name(p->tactic));
        if (memcmp(p->bytes, j->bytes + (p->site - j->site), p->len))
            return pk_fail(err, bad, "patch %zu at 0x%llx: original bytes differ from jump %zu's",
                           i, at, k);
        if (p->trampoline - j->trampoline >= j->trampoline_len)
            return pk_fail(err, bad,
                           "patch %zu at 0x%llx: trampoline 0x%llx is not in jump %zu's", i, at,
                           (unsigned long long)p->trampoline, k);
        bool alone = p->site == j->site && p->len == j->len;
        if (alone != (p->tactic == PK_TACTIC_JMP))
            return pk_fail(err, bad, "patch %zu at 0x%llx: %s patch %s jump %zu", i, at,
                           pk_tactic_name(p->tactic), alone ? "alone in" : "not alone in", k);
    }
    size_t i = 0;
    for (k = 0; k < t->njumps; k++) {
        while (i < t->count && t->patches[i].site < t->jumps[k].site)
            i++;
        /* A patch there has a jump tactic: the walk above refused int3. */
        if (i == t->count || t->patches[i].site >= jump_end(&t->jumps[k]))
            return pk_fail(err, bad, "jump %zu at 0x%llx: no patched site inside it", k,
                           (unsigned long long)t->jumps[k].site);
    }
    return PK_OK;
}

static bool bits_valid(unsigned bits)
{
    return bits == 16 || bits == 32 || bits == 64;
}

/* Every rule a table follows, but the flags (whose status differs). */
static pk_status check_table(const pk_patch_table *t, pk_error *err, pk_status bad)
{
    if ((t->flags & PK_TABLE_PASSTHROUGH) && (t->flags & PK_TABLE_MAPPED))
        return pk_fail(err, bad, "a passthrough table runs without a monitor to map its jumps");
    for (size_t i = 0; i < t->count; i++)
        PK_CHECK(check_patch(&t->patches[i], i ? &t->patches[i - 1] : NULL, i, err, bad));
    for (size_t k = 0; k < t->njumps; k++)
        PK_CHECK(check_jump(&t->jumps[k], k ? &t->jumps[k - 1] : NULL, k, err, bad));
    return check_nesting(t, err, bad);
}

/* ---- encode / decode -------------------------------------------------------------- */

pk_status pk_patch_table_encode(const pk_patch_table *table, uint8_t **out, size_t *len,
                                pk_error *err)
{
    *out = NULL;
    *len = 0;
    if (!bits_valid(table->bits))
        return pk_fail(err, PK_ERR_USAGE, "bitness %u is not 16, 32 or 64", table->bits);
    if (table->flags & ~(unsigned)(PK_TABLE_PASSTHROUGH | PK_TABLE_MAPPED | PK_TABLE_USER))
        return pk_fail(err, PK_ERR_USAGE, "unknown table flags 0x%x", table->flags);
    if (table->count > UINT32_MAX || table->njumps > UINT32_MAX)
        return pk_fail(err, PK_ERR_USAGE, "%zu patches and %zu jumps: more than a table holds",
                       table->count, table->njumps);
    PK_CHECK(check_table(table, err, PK_ERR_USAGE));

    size_t jumps_at = HEADER_SIZE + table->count * ENTRY_SIZE;
    size_t size = jumps_at + table->njumps * JUMP_SIZE;
    uint8_t *b = calloc(1, size);
    if (!b)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    memcpy(b, magic, sizeof magic);
    put_le(b + 8, VERSION, 2);
    b[10] = (uint8_t)table->bits;
    b[11] = (uint8_t)table->flags;
    put_le(b + 12, table->count, 4);
    put_le(b + 16, table->vcpu_page, 8);
    put_le(b + 24, ENTRY_SIZE, 4);
    put_le(b + 28, table->njumps, 4);
    for (size_t i = 0; i < table->count; i++) {
        const pk_patch *p = &table->patches[i];
        uint8_t *e = b + HEADER_SIZE + i * ENTRY_SIZE;
        put_le(e, p->site, 8);
        put_le(e + 8, p->trampoline, 8);
        e[16] = p->len;
        e[17] = (uint8_t)p->tactic;
        memcpy(e + 18, p->bytes, p->len);
        strncpy((char *)e + 33, pk_class_get(p->cls)->key, ROW_KEY_SIZE - 1);
    }
    for (size_t k = 0; k < table->njumps; k++) {
        const pk_jump *j = &table->jumps[k];
        uint8_t *e = b + jumps_at + k * JUMP_SIZE;
        put_le(e, j->site, 8);
        put_le(e + 8, j->trampoline, 8);
        e[16] = j->len;
        put_le(e + 18, j->trampoline_len, 2);
        memcpy(e + 20, j->bytes, j->len);
    }
    *out = b;
    *len = size;
    return PK_OK;
}

/* Reads the entries of a table whose header decode has checked. */
static pk_status decode_entries(const uint8_t *buf, pk_patch_table *t, pk_error *err)
{
    for (size_t i = 0; i < t->count; i++) {
        const uint8_t *e = buf + HEADER_SIZE + i * ENTRY_SIZE;
        pk_patch *p = &t->patches[i];
        p->site = get_le(e, 8);
        p->trampoline = get_le(e + 8, 8);
        p->len = e[16];
        p->tactic = (pk_tactic)e[17];
        memcpy(p->bytes, e + 18, sizeof p->bytes);
        char key[ROW_KEY_SIZE];
        memcpy(key, e + 33, ROW_KEY_SIZE);
        key[ROW_KEY_SIZE - 1] = 0;
        const pk_class *c = pk_class_find(key);
        if (!c || strcmp(c->key, key))
            return pk_fail(err, PK_ERR_UNSUPPORTED, "patch %zu: catalog row '%s' unknown", i,
                           key);
        p->cls = c->id;
    }
    const uint8_t *jumps = buf + HEADER_SIZE + t->count * ENTRY_SIZE;
    for (size_t k = 0; k < t->njumps; k++) {
        const uint8_t *e = jumps + k * JUMP_SIZE;
        pk_jump *j = &t->jumps[k];
        j->site = get_le(e, 8);
        j->trampoline = get_le(e + 8, 8);
        j->len = e[16];
        j->trampoline_len = (uint16_t)get_le(e + 18, 2);
        memcpy(j->bytes, e + 20, sizeof j->bytes);
    }
    return check_table(t, err, PK_ERR_FORMAT);
}

pk_status pk_patch_table_decode(const uint8_t *buf, size_t len, pk_patch_table *table,
                                pk_error *err)
{
    memset(table, 0, sizeof *table);
    if (len < HEADER_SIZE || memcmp(buf, magic, sizeof magic))
        return pk_fail(err, PK_ERR_FORMAT, "not a popek patch table");
    unsigned version = (unsigned)get_le(buf + 8, 2);
    if (version != VERSION)
        return pk_fail(err, PK_ERR_UNSUPPORTED, "patch table version %u (this popek reads %u)",
                       version, VERSION);
    unsigned bits = buf[10], flags = buf[11];
    uint64_t count = get_le(buf + 12, 4), entry_size = get_le(buf + 24, 4);
    uint64_t njumps = get_le(buf + 28, 4);
    if (!bits_valid(bits))
        return pk_fail(err, PK_ERR_FORMAT, "patch table: bitness %u", bits);
    if (flags & ~(unsigned)(PK_TABLE_PASSTHROUGH | PK_TABLE_MAPPED | PK_TABLE_USER))
        return pk_fail(err, PK_ERR_UNSUPPORTED, "patch table: unknown flags 0x%x", flags);
    if (entry_size != ENTRY_SIZE)
        return pk_fail(err, PK_ERR_FORMAT, "patch table: entry size %llu, not %d",
                       (unsigned long long)entry_size, ENTRY_SIZE);
    /* Counts are 32-bit: the sum cannot overflow 64 bits. */
    if (count * ENTRY_SIZE + njumps * JUMP_SIZE > len - HEADER_SIZE)
        return pk_fail(err, PK_ERR_FORMAT,
                       "patch table: truncated (%llu entries and %llu jumps in %zu bytes)",
                       (unsigned long long)count, (unsigned long long)njumps, len);

    table->bits = bits;
    table->flags = flags;
    table->vcpu_page = get_le(buf + 16, 8);
    table->count = count;
    table->njumps = njumps;
    table->patches = calloc(count ? count : 1, sizeof *table->patches);
    table->jumps = calloc(njumps ? njumps : 1, sizeof *table->jumps);
    pk_status s = table->patches && table->jumps ? decode_entries(buf, table, err)
                                                 : pk_fail(err, PK_ERR_NOMEM, "out of memory");
    if (s != PK_OK)
        pk_patch_table_free(table);
    return s;
}

void pk_patch_table_free(pk_patch_table *table)
{
    free(table->patches);
    free(table->jumps);
    memset(table, 0, sizeof *table);
}

/* ---- lookup ------------------------------------------------------------------------ */

const pk_patch *pk_patch_table_find(const pk_patch_table *table, uint64_t addr)
{
    size_t lo = 0, hi = table->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (table->patches[mid].site < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < table->count && table->patches[lo].site == addr ? &table->patches[lo] : NULL;
}

const pk_jump *pk_patch_table_jump_at(const pk_patch_table *table, uint64_t addr)
{
    /* The first jump ending after addr is the only one that can hold it. */
    size_t lo = 0, hi = table->njumps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (jump_end(&table->jumps[mid]) <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < table->njumps && table->jumps[lo].site <= addr ? &table->jumps[lo] : NULL;
}

/* ---- the patched code --------------------------------------------------------------- */

/* Whether code (j->len bytes at j->site) is what a jump writes: a near jmp
 * with a rel32 reaching j->trampoline, then INT3 to the end. Sets *why. */
static bool jump_matches(const ZydisDecoder *dec, const pk_jump *j, const uint8_t *code,
                         const char **why)
{
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    ZyanU64 target;
    *why = "no jmp rel32";
    if (ZYAN_FAILED(ZydisDecoderDecodeFull(dec, code, j->len, &insn, ops)) ||
        insn.mnemonic != ZYDIS_MNEMONIC_JMP || insn.length != 5 ||
        insn.meta.branch_type != ZYDIS_BRANCH_TYPE_NEAR || insn.raw.imm[0].size != 32 ||
        ops[0].type != ZYDIS_OPERAND_TYPE_IMMEDIATE || !ops[0].imm.is_relative)
        return false;
    *why = "a jmp elsewhere";
    if (ZYAN_FAILED(ZydisCalcAbsoluteAddress(&insn, &ops[0], j->site, &target)) ||
        target != j->trampoline)
        return false;
    *why = "no int3 after the jmp";
    for (unsigned i = 5; i < j->len; i++)
        if (code[i] != INT3)
            return false;
    return true;
}

pk_status pk_patch_table_check_code(const pk_patch_table *table, pk_code_at at, void *ctx,
                                    pk_error *err)
{
    for (size_t i = 0; i < table->count; i++) {
        const pk_patch *p = &table->patches[i];
        if (p->tactic != PK_TACTIC_INT3)
            continue; /* its jump covers it */
        const uint8_t *code = at(ctx, p->site, p->len);
        if (!code)
            return pk_fail(err, PK_ERR_FORMAT, "patch %zu at 0x%llx is not in code", i,
                           (unsigned long long)p->site);
        if (code[0] != INT3 || memcmp(code + 1, p->bytes + 1, p->len - 1u))
            return pk_fail(err, PK_ERR_FORMAT,
                           "patch %zu at 0x%llx does not match the file (int3 of the original %s)",
                           i, (unsigned long long)p->site, pk_class_get(p->cls)->key);
    }
    if (!table->njumps)
        return PK_OK;
    if (table->bits == 16)
        return pk_fail(err, PK_ERR_FORMAT, "jump 0 at 0x%llx: jumps need 32- or 64-bit code",
                       (unsigned long long)table->jumps[0].site);
    ZydisDecoder dec;
    ZydisDecoderInit(&dec, table->bits == 64 ? ZYDIS_MACHINE_MODE_LONG_64
                                             : ZYDIS_MACHINE_MODE_LEGACY_32,
                     table->bits == 64 ? ZYDIS_STACK_WIDTH_64 : ZYDIS_STACK_WIDTH_32);
    for (size_t k = 0; k < table->njumps; k++) {
        const pk_jump *j = &table->jumps[k];
        const uint8_t *code = at(ctx, j->site, j->len);
        const char *why;
        if (!code)
            return pk_fail(err, PK_ERR_FORMAT, "jump %zu at 0x%llx is not in code", k,
                           (unsigned long long)j->site);
        if (!jump_matches(&dec, j, code, &why))
            return pk_fail(err, PK_ERR_FORMAT,
                           "jump %zu at 0x%llx does not match the file (%s: want jmp 0x%llx, "
                           "int3 to 0x%llx)", k, (unsigned long long)j->site, why,
                           (unsigned long long)j->trampoline,
                           (unsigned long long)jump_end(j));
    }
    return PK_OK;
}

void pk_patch_table_restore_code(const pk_patch_table *table, pk_code_at at, void *ctx)
{
    for (size_t i = 0; i < table->count; i++) {
        const pk_patch *p = &table->patches[i];
        if (p->tactic != PK_TACTIC_INT3)
            continue;
        uint8_t *code = at(ctx, p->site, p->len);
        assert(code);
        memcpy(code, p->bytes, p->len);
    }
    for (size_t k = 0; k < table->njumps; k++) {
        const pk_jump *j = &table->jumps[k];
        uint8_t *code = at(ctx, j->site, j->len);
        assert(code);
        memcpy(code, j->bytes, j->len);
    }
}
