/* popek — the patch table: encoding, decoding, lookup.
 *
 * Little-endian, fixed-size records, so that a monitor (or a person with
 * xxd) reads it without a parser library; docs/patch-table.md draws it.
 * Rows are stored by key, not by their index in the catalog, so a table
 * stays readable after the catalog grows. */
#include "popek/patch.h"

#include <stdlib.h>
#include <string.h>

enum {
    HEADER_SIZE = 32,
    ENTRY_SIZE = 56,
    VERSION = 1,
    ROW_KEY_SIZE = 16,
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

/* Checks one patch, and that it follows prev (NULL for the first); bad is
 * the status to fail with (a caller's mistake, or a corrupt file). */
static pk_status check_patch(const pk_patch *p, const pk_patch *prev, size_t i, pk_error *err,
                             pk_status bad)
{
    if (p->len < 1 || p->len > 15)
        return pk_fail(err, bad, "patch %zu: instruction length %u is not 1..15", i, p->len);
    if (!pk_class_get(p->cls))
        return pk_fail(err, bad, "patch %zu: no catalog row %d", i, (int)p->cls);
    if (!tactic_valid(p->tactic))
        return pk_fail(err, bad, "patch %zu: unknown tactic %d", i, (int)p->tactic);
    if ((p->tactic == PK_TACTIC_INT3) != (p->trampoline == 0))
        return pk_fail(err, bad, "patch %zu: %s patch %s a trampoline", i,
                       pk_tactic_name(p->tactic),
                       p->tactic == PK_TACTIC_INT3 ? "with" : "without");
    if (p->site + p->len < p->site)
        return pk_fail(err, bad, "patch %zu: site wraps around the address space", i);
    if (prev && p->site < prev->site + prev->len)
        return pk_fail(err, bad, "patch %zu at 0x%llx overlaps or precedes the one before", i,
                       (unsigned long long)p->site);
    return PK_OK;
}

static bool bits_valid(unsigned bits)
{
    return bits == 16 || bits == 32 || bits == 64;
}

/* ---- encode / decode -------------------------------------------------------------- */

pk_status pk_patch_table_encode(const pk_patch_table *table, uint8_t **out, size_t *len,
                                pk_error *err)
{
    *out = NULL;
    *len = 0;
    if (!bits_valid(table->bits))
        return pk_fail(err, PK_ERR_USAGE, "bitness %u is not 16, 32 or 64", table->bits);
    for (size_t i = 0; i < table->count; i++)
        PK_CHECK(check_patch(&table->patches[i], i ? &table->patches[i - 1] : NULL, i, err,
                             PK_ERR_USAGE));
    if (table->count > UINT32_MAX)
        return pk_fail(err, PK_ERR_USAGE, "%zu patches: more than a table holds", table->count);

    size_t size = HEADER_SIZE + table->count * ENTRY_SIZE;
    uint8_t *b = calloc(1, size);
    if (!b)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    memcpy(b, magic, sizeof magic);
    put_le(b + 8, VERSION, 2);
    b[10] = (uint8_t)table->bits;
    put_le(b + 12, table->count, 4);
    put_le(b + 16, table->vcpu_page, 8);
    put_le(b + 24, ENTRY_SIZE, 4);
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
    *out = b;
    *len = size;
    return PK_OK;
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
    unsigned bits = buf[10];
    uint64_t count = get_le(buf + 12, 4), entry_size = get_le(buf + 24, 4);
    if (!bits_valid(bits))
        return pk_fail(err, PK_ERR_FORMAT, "patch table: bitness %u", bits);
    if (entry_size != ENTRY_SIZE)
        return pk_fail(err, PK_ERR_FORMAT, "patch table: entry size %llu, not %d",
                       (unsigned long long)entry_size, ENTRY_SIZE);
    if (count > (len - HEADER_SIZE) / ENTRY_SIZE)
        return pk_fail(err, PK_ERR_FORMAT, "patch table: truncated (%llu entries in %zu bytes)",
                       (unsigned long long)count, len);

    pk_patch *patches = calloc(count ? count : 1, sizeof *patches);
    if (!patches)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = buf + HEADER_SIZE + i * ENTRY_SIZE;
        pk_patch *p = &patches[i];
        p->site = get_le(e, 8);
        p->trampoline = get_le(e + 8, 8);
        p->len = e[16];
        p->tactic = (pk_tactic)e[17];
        memcpy(p->bytes, e + 18, sizeof p->bytes);
        char key[ROW_KEY_SIZE];
        memcpy(key, e + 33, ROW_KEY_SIZE);
        key[ROW_KEY_SIZE - 1] = 0;
        const pk_class *c = pk_class_find(key);
        if (!c || strcmp(c->key, key)) {
            free(patches);
            return pk_fail(err, PK_ERR_UNSUPPORTED, "patch %zu: catalog row '%s' unknown", i,
                           key);
        }
        p->cls = c->id;
        pk_status s = check_patch(p, i ? &patches[i - 1] : NULL, i, err, PK_ERR_FORMAT);
        if (s != PK_OK) {
            free(patches);
            return s;
        }
    }
    table->bits = bits;
    table->vcpu_page = get_le(buf + 16, 8);
    table->patches = patches;
    table->count = count;
    return PK_OK;
}

void pk_patch_table_free(pk_patch_table *table)
{
    free(table->patches);
    memset(table, 0, sizeof *table);
}

bool pk_patch_site_matches(const pk_patch *p, const uint8_t *at)
{
    return p->tactic == PK_TACTIC_INT3 && at[0] == 0xCC &&
           !memcmp(at + 1, p->bytes + 1, p->len - 1u);
}

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
