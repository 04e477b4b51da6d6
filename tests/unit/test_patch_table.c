/* popek — unit tests: the patch table's format. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "popek/popek.h"

static const pk_patch sample[] = {
    { .site = 0xffffffff81000160, .len = 1, .bytes = { 0x9c }, .cls = PK_CLASS_PUSHF,
      .tactic = PK_TACTIC_INT3 },
    { .site = 0xffffffff81000161, .len = 3, .bytes = { 0x0f, 0x01, 0x00 }, .cls = PK_CLASS_SGDT,
      .tactic = PK_TACTIC_JMP, .trampoline = 0xffffffff90000000 },
    { .site = 0xffffffff81000170, .len = 1, .bytes = { 0x9d }, .cls = PK_CLASS_POPF,
      .tactic = PK_TACTIC_JMP_DISPLACED, .trampoline = 0xffffffff90000040 },
};

static pk_patch_table sample_table(void)
{
    return (pk_patch_table){ .bits = 64, .vcpu_page = 0x7fff0000, .patches = (pk_patch *)sample,
                             .count = 3 };
}

static uint8_t *encode(const pk_patch_table *t, size_t *len)
{
    uint8_t *buf;
    pk_error err;
    cr_assert_eq(pk_patch_table_encode(t, &buf, len, &err), PK_OK, "%s", err.msg);
    return buf;
}

Test(patch_table, round_trip)
{
    pk_patch_table t = sample_table(), back;
    size_t len;
    uint8_t *buf = encode(&t, &len);
    cr_assert_eq(len, 32 + 3 * 56);
    cr_assert_eq(memcmp(buf, "POPEKPT", 8), 0);
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(back.bits, 64);
    cr_assert_eq(back.vcpu_page, 0x7fff0000);
    cr_assert_eq(back.count, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(back.patches[i].site, sample[i].site);
        cr_assert_eq(back.patches[i].trampoline, sample[i].trampoline);
        cr_assert_eq(back.patches[i].len, sample[i].len);
        cr_assert_eq(memcmp(back.patches[i].bytes, sample[i].bytes, sample[i].len), 0);
        cr_assert_eq(back.patches[i].cls, sample[i].cls);
        cr_assert_eq(back.patches[i].tactic, sample[i].tactic);
    }
    cr_assert_eq(pk_patch_table_find(&back, 0xffffffff81000161)->cls, PK_CLASS_SGDT);
    cr_assert_null(pk_patch_table_find(&back, 0xffffffff81000162));
    cr_assert_null(pk_patch_table_find(&back, 0));
    pk_patch_table_free(&back);
    free(buf);
}

Test(patch_table, rows_are_stored_by_key)
{
    pk_patch_table t = sample_table();
    size_t len;
    uint8_t *buf = encode(&t, &len);
    cr_assert_str_eq((const char *)buf + 32 + 33, "pushf");
    cr_assert_str_eq((const char *)buf + 32 + 56 + 33, "sgdt");
    free(buf);
}

Test(patch_table, empty_table)
{
    pk_patch_table t = { .bits = 32 }, back;
    size_t len;
    uint8_t *buf = encode(&t, &len);
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len, &back, &err), PK_OK, "%s", err.msg);
    cr_assert_eq(back.count, 0);
    cr_assert_null(pk_patch_table_find(&back, 0));
    pk_patch_table_free(&back);
    free(buf);
}

Test(patch_table, encode_refuses_broken_tables)
{
    pk_patch p[2] = { sample[0], sample[1] };
    pk_patch_table t = { .bits = 64, .patches = p, .count = 2 };
    uint8_t *buf;
    size_t len;
    pk_error err;

    p[1].site = p[0].site; /* overlapping */
    cr_assert_eq(pk_patch_table_encode(&t, &buf, &len, &err), PK_ERR_USAGE);
    cr_assert_null(buf);
    p[1] = sample[1];
    p[1].trampoline = 0; /* a jump without a trampoline */
    cr_assert_eq(pk_patch_table_encode(&t, &buf, &len, &err), PK_ERR_USAGE);
    p[1] = sample[1];
    p[1].len = 16;
    cr_assert_eq(pk_patch_table_encode(&t, &buf, &len, &err), PK_ERR_USAGE);
    p[1] = sample[1];
    p[1].tactic = (pk_tactic)7;
    cr_assert_eq(pk_patch_table_encode(&t, &buf, &len, &err), PK_ERR_USAGE);
    p[1] = sample[1];
    t.bits = 8;
    cr_assert_eq(pk_patch_table_encode(&t, &buf, &len, &err), PK_ERR_USAGE);
}

/* Corrupts one field of an encoded sample table and expects decode to fail
 * with the given status. */
static void expect_corrupt(size_t at, uint8_t value, pk_status want)
{
    pk_patch_table t = sample_table(), back;
    size_t len;
    uint8_t *buf = encode(&t, &len);
    buf[at] = value;
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
    expect_corrupt(12, 4, PK_ERR_FORMAT);                   /* count past the end */
    expect_corrupt(24, 48, PK_ERR_FORMAT);                  /* entry size */
    expect_corrupt(32 + 16, 0, PK_ERR_FORMAT);              /* length 0 */
    expect_corrupt(32 + 17, 9, PK_ERR_FORMAT);              /* tactic */
    expect_corrupt(32 + 33, 'q', PK_ERR_UNSUPPORTED);       /* row "qushf" */
    expect_corrupt(32 + 56 + 7, 0x00, PK_ERR_FORMAT);       /* sites out of order */
    expect_corrupt(32 + 8, 1, PK_ERR_FORMAT);               /* int3 with a trampoline */

    pk_patch_table t = sample_table(), back;
    size_t len;
    uint8_t *buf = encode(&t, &len);
    pk_error err;
    cr_assert_eq(pk_patch_table_decode(buf, len - 1, &back, &err), PK_ERR_FORMAT);
    cr_assert_eq(pk_patch_table_decode(buf, 31, &back, &err), PK_ERR_FORMAT);
    free(buf);
}
