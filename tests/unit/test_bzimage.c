/* popek — unit tests for the bzImage payload extractor (scanner/bzimage.c).
 *
 * Each test builds a small bzImage-like buffer: a setup area with the fields
 * the extractor reads, a stand-in for the decompressor code, then a payload
 * compressed here with the same libraries and followed, like the kernel's,
 * by the uncompressed size as a LE u32. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "popek/bzimage.h"

/* ---- helpers ------------------------------------------------------------ */

/* Every helper allocation is kept here and freed after each test, so the
 * tests stay leak-free under LeakSanitizer without free() on every path. */
static void **arena;
static size_t arena_len;

static void *arena_realloc(void *old, size_t size)
{
    void *p = realloc(old, size ? size : 1);
    cr_assert_not_null(p, "out of memory in the test");
    for (size_t i = 0; old && i < arena_len; i++)
        if (arena[i] == old) {
            arena[i] = p;
            return p;
        }
    arena = realloc(arena, (arena_len + 1) * sizeof *arena);
    cr_assert_not_null(arena);
    arena[arena_len++] = p;
    return p;
}

static void *arena_zalloc(size_t size)
{
    void *p = arena_realloc(NULL, size);
    memset(p, 0, size);
    return p;
}

static void arena_free_all(void)
{
    for (size_t i = 0; i < arena_len; i++)
        free(arena[i]);
    free(arena);
    arena = NULL;
    arena_len = 0;
}

TestSuite(bzimage, .fini = arena_free_all);

typedef struct buf {
    uint8_t *data;
    size_t len;
} buf;

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void buf_append(buf *b, const void *data, size_t len)
{
    b->data = arena_realloc(b->data, b->len + len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void buf_append_le32(buf *b, uint32_t v)
{
    uint8_t tmp[4];
    put_le32(tmp, v);
    buf_append(b, tmp, 4);
}

/* Compressible but not trivial: words picked by a fixed LCG, plus runs. */
static buf sample_data(size_t len)
{
    static const char *const words[] = { "pushf ", "popf ", "sgdt ",
                                         "smsw ", "lar ", "verr ", "mov ",
                                         "\x9c\x9d", "\x0f\x01\x00" };
    buf b = { arena_realloc(NULL, len), len };
    cr_assert_not_null(b.data);
    uint32_t x = 12345;
    size_t i = 0;
    while (i < len) {
        x = x * 1103515245u + 12345u;
        if ((x >> 8) % 17 == 0) {
            b.data[i++] = (uint8_t)(x >> 24); /* a stray byte now and then */
            continue;
        }
        const char *w = words[(x >> 16) % (sizeof words / sizeof words[0])];
        for (size_t k = 0; w[k] && i < len; k++)
            b.data[i++] = (uint8_t)w[k];
    }
    return b;
}

static buf compress_gzip(const uint8_t *in, size_t len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    cr_assert_eq(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8,
                              Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, len) + 64;
    buf b = { arena_realloc(NULL, cap), 0 };
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = b.data;
    zs.avail_out = (uInt)cap;
    cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    b.len = cap - zs.avail_out;
    deflateEnd(&zs);
    return b;
}

static buf compress_xz(const uint8_t *in, size_t len)
{
    size_t cap = lzma_stream_buffer_bound(len);
    buf b = { arena_realloc(NULL, cap), 0 };
    cr_assert_eq(lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, NULL, in, len,
                                         b.data, &b.len, cap), LZMA_OK);
    return b;
}

/* With a content checksum, as the zstd command-line tool writes by default. */
static buf compress_zstd(const uint8_t *in, size_t len)
{
    size_t cap = ZSTD_compressBound(len);
    buf b = { arena_realloc(NULL, cap), 0 };
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    cr_assert_not_null(cctx);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 19);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    b.len = ZSTD_compress2(cctx, b.data, cap, in, len);
    cr_assert(!ZSTD_isError(b.len), "ZSTD_compress2: %s",
              ZSTD_getErrorName(b.len));
    ZSTD_freeCCtx(cctx);
    return b;
}

/* The legacy frame by hand: magic, then (LE u32 size, LZ4 block) pairs. */
static buf compress_lz4_block(const uint8_t *in, size_t len, size_t block)
{
    buf b = { NULL, 0 };
    buf_append_le32(&b, 0x184C2102u);
    int bound = LZ4_compressBound((int)block);
    char *tmp = malloc((size_t)bound);
    for (size_t off = 0; off < len; off += block) {
        size_t n = len - off < block ? len - off : block;
        int c = LZ4_compress_default((const char *)in + off, tmp, (int)n,
                                     bound);
        cr_assert_gt(c, 0);
        buf_append_le32(&b, (uint32_t)c);
        buf_append(&b, tmp, (size_t)c);
    }
    free(tmp);
    return b;
}

static buf compress_lz4(const uint8_t *in, size_t len)
{
    return compress_lz4_block(in, len, (size_t)8 << 20);
}

/* A bzImage around payload: setup_sects as stored (0 means 4), payload at
 * payload_offset into the protected-mode part, some bytes after it. */
static buf make_image_at(const buf *payload, uint8_t setup_sects,
                         uint32_t payload_offset)
{
    size_t sects = setup_sects ? setup_sects : 4;
    size_t start = (sects + 1) * 512 + payload_offset;
    buf img = { arena_zalloc(start + payload->len + 100), 0 };
    cr_assert_not_null(img.data);
    img.len = start + payload->len + 100;
    memset(img.data + (sects + 1) * 512, 0xCC, payload_offset);
    img.data[0x1F1] = setup_sects;
    img.data[0x1FE] = 0x55;
    img.data[0x1FF] = 0xAA;
    memcpy(img.data + 0x202, "HdrS", 4);
    put_le16(img.data + 0x206, 0x020F);
    put_le32(img.data + 0x248, payload_offset);
    put_le32(img.data + 0x24C, (uint32_t)payload->len);
    memcpy(img.data + start, payload->data, payload->len);
    memset(img.data + start + payload->len, 0xEE, 100);
    return img;
}

static buf make_image(const buf *payload)
{
    return make_image_at(payload, 27, 0x3A1);
}

/* compressed stream + the kernel's trailing size field */
static buf kernel_payload(const buf *stream, uint32_t size_field)
{
    buf p = { NULL, 0 };
    buf_append(&p, stream->data, stream->len);
    buf_append_le32(&p, size_field);
    return p;
}

typedef buf (*compressor)(const uint8_t *, size_t);

typedef struct result {
    pk_status st;
    uint8_t *out;
    size_t out_len;
    const char *comp;
    pk_error err;
} result;

static result extract(const buf *img)
{
    result r;
    memset(&r, 0, sizeof r);
    r.st = pk_bzimage_extract(img->data, img->len, &r.out, &r.out_len,
                              &r.comp, &r.err);
    return r;
}

static void assert_roundtrip(compressor c, const char *name, size_t len)
{
    buf data = sample_data(len);
    buf stream = c(data.data, data.len);
    buf payload = kernel_payload(&stream, (uint32_t)data.len);
    buf img = make_image(&payload);
    cr_assert(pk_bzimage_detect(img.data, img.len));
    result r = extract(&img);
    cr_assert_eq(r.st, PK_OK, "%s: %s", name, r.err.msg);
    cr_assert_str_eq(r.comp, name);
    cr_assert_eq(r.out_len, data.len);
    cr_assert(memcmp(r.out, data.data, data.len) == 0, "%s: output differs",
              name);
    free(r.out);
}

/* A failure must be the expected status, with a one-line message starting
 * with prefix, and must hand back no buffer. */
static void assert_fails(const buf *img, pk_status want, const char *prefix)
{
    result r = extract(img);
    cr_assert_eq(r.st, want, "status %d, want %d (%s)", r.st, want,
                 r.err.msg);
    cr_assert_null(r.out);
    cr_assert_eq(r.out_len, 0);
    cr_assert_neq(r.err.msg[0], '\0');
    cr_assert_null(strchr(r.err.msg, '\n'), "multi-line: %s", r.err.msg);
    cr_assert_eq(strncmp(r.err.msg, prefix, strlen(prefix)), 0,
                 "message \"%s\" does not start with \"%s\"", r.err.msg,
                 prefix);
}

/* ---- detect ------------------------------------------------------------- */

Test(bzimage, detect_accepts_header)
{
    buf stream = { (uint8_t *)"\x1f\x8b", 2 };
    buf img = make_image(&stream);
    cr_assert(pk_bzimage_detect(img.data, img.len));
    /* the header fields are all detect needs */
    cr_assert(pk_bzimage_detect(img.data, 0x208));
}

Test(bzimage, detect_rejects_short_buffers)
{
    buf stream = { (uint8_t *)"\x1f\x8b", 2 };
    buf img = make_image(&stream);
    cr_assert_not(pk_bzimage_detect(NULL, 0));
    cr_assert_not(pk_bzimage_detect(img.data, 0));
    cr_assert_not(pk_bzimage_detect(img.data, 0x200));
    cr_assert_not(pk_bzimage_detect(img.data, 0x207));
}

Test(bzimage, detect_rejects_non_bzimages)
{
    buf stream = { (uint8_t *)"\x1f\x8b", 2 };
    buf img = make_image(&stream);

    uint8_t elf[0x400] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 };
    cr_assert_not(pk_bzimage_detect(elf, sizeof elf));

    img.data[0x1FF] = 0x00; /* boot signature */
    cr_assert_not(pk_bzimage_detect(img.data, img.len));
    img.data[0x1FF] = 0xAA;
    img.data[0x205] = 'Z'; /* "HdrZ" */
    cr_assert_not(pk_bzimage_detect(img.data, img.len));
    img.data[0x205] = 'S';
    put_le16(img.data + 0x206, 0x0207); /* before payload fields existed */
    cr_assert_not(pk_bzimage_detect(img.data, img.len));
    put_le16(img.data + 0x206, 0x0208);
    cr_assert(pk_bzimage_detect(img.data, img.len));
}

Test(bzimage, extract_rejects_non_bzimage)
{
    uint8_t elf[0x400] = { 0x7f, 'E', 'L', 'F', 2, 1, 1 };
    buf b = { elf, sizeof elf };
    assert_fails(&b, PK_ERR_FORMAT, "not a bzImage");
    b.len = 10;
    assert_fails(&b, PK_ERR_FORMAT, "not a bzImage");
}

Test(bzimage, extract_rejects_old_protocol)
{
    buf stream = compress_gzip((const uint8_t *)"hello", 5);
    buf payload = kernel_payload(&stream, 5);
    buf img = make_image(&payload);
    put_le16(img.data + 0x206, 0x0206);
    assert_fails(&img, PK_ERR_UNSUPPORTED, "bzImage boot protocol 2.06");
}

/* ---- round trips -------------------------------------------------------- */

Test(bzimage, roundtrip_gzip)
{
    assert_roundtrip(compress_gzip, "gzip", 300000);
}

Test(bzimage, roundtrip_xz)
{
    assert_roundtrip(compress_xz, "xz", 300000);
}

Test(bzimage, roundtrip_zstd)
{
    assert_roundtrip(compress_zstd, "zstd", 300000);
}

Test(bzimage, roundtrip_lz4)
{
    assert_roundtrip(compress_lz4, "lz4", 300000);
}

/* More than one 8 MiB legacy block, as in a real kernel. */
Test(bzimage, roundtrip_lz4_several_blocks)
{
    assert_roundtrip(compress_lz4, "lz4", (size_t)19 << 20);
}

/* Highly compressible output outgrows the first allocation many times. */
Test(bzimage, roundtrip_grows_buffer)
{
    size_t len = (size_t)24 << 20;
    uint8_t *zeros = arena_zalloc(len);
    zeros[len / 2] = 0x9c;
    zeros[len - 1] = 0x9d;
    compressor cs[] = { compress_gzip, compress_xz, compress_zstd,
                        compress_lz4 };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        buf stream = cs[i](zeros, len);
        buf payload = kernel_payload(&stream, (uint32_t)len);
        buf img = make_image(&payload);
        result r = extract(&img);
        cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
        cr_assert_eq(r.out_len, len);
        cr_assert(memcmp(r.out, zeros, len) == 0);
        free(r.out);
    }
}

Test(bzimage, setup_sects_zero_means_four)
{
    buf data = sample_data(5000);
    buf stream = compress_gzip(data.data, data.len);
    buf payload = kernel_payload(&stream, (uint32_t)data.len);
    buf img = make_image_at(&payload, 0, 0);
    result r = extract(&img);
    cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
    cr_assert_eq(r.out_len, data.len);
    cr_assert(memcmp(r.out, data.data, data.len) == 0);
    free(r.out);
    /* taking 0 literally would look for the payload at 512 */
    cr_assert_neq(memcmp(img.data + 512, "\x1f\x8b", 2), 0);
}

/* Without the kernel's size field the stream must still decode (gzip's own
 * trailer then ends the payload). */
Test(bzimage, gzip_without_size_field)
{
    buf data = sample_data(7000);
    buf stream = compress_gzip(data.data, data.len);
    buf img = make_image(&stream);
    result r = extract(&img);
    cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
    cr_assert_eq(r.out_len, data.len);
    cr_assert(memcmp(r.out, data.data, data.len) == 0);
    free(r.out);
}

/* ---- truncation --------------------------------------------------------- */

Test(bzimage, truncated_file)
{
    buf data = sample_data(20000);
    compressor cs[] = { compress_gzip, compress_xz, compress_zstd,
                        compress_lz4 };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        buf stream = cs[i](data.data, data.len);
        buf payload = kernel_payload(&stream, (uint32_t)data.len);
        buf img = make_image(&payload);
        size_t end = img.len - 100; /* where the payload ends */
        size_t cuts[] = { end - 1, end - 4, end / 2 + 1000, 0x3000, 0x250,
                          0x24F, 0x209 };
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            buf cut = { img.data, cuts[k] };
            assert_fails(&cut, PK_ERR_FORMAT, "truncated bzImage");
        }
        /* the full file, and the file cut right after the payload, decode */
        buf exact = { img.data, end };
        result r = extract(&exact);
        cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
        free(r.out);
    }
}

Test(bzimage, payload_fields_out_of_range)
{
    buf data = sample_data(1000);
    buf stream = compress_gzip(data.data, data.len);
    buf payload = kernel_payload(&stream, (uint32_t)data.len);
    buf img = make_image(&payload);
    put_le32(img.data + 0x248, 0xFFFFFFFFu);
    assert_fails(&img, PK_ERR_FORMAT, "truncated bzImage");
    put_le32(img.data + 0x248, 0x3A1);
    put_le32(img.data + 0x24C, 0xFFFFFFFFu);
    assert_fails(&img, PK_ERR_FORMAT, "truncated bzImage");
    put_le32(img.data + 0x24C, 3);
    assert_fails(&img, PK_ERR_FORMAT, "bzImage payload is only 3 bytes");
}

/* The compressed stream itself is cut short, the header being consistent. */
Test(bzimage, truncated_stream)
{
    buf data = sample_data(100000);
    struct { compressor c; const char *prefix; } cs[] = {
        { compress_gzip, "corrupt gzip payload: " },
        { compress_xz, "corrupt xz payload: " },
        { compress_zstd, "corrupt zstd payload: " },
        { compress_lz4, "corrupt lz4 payload: " },
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        buf stream = cs[i].c(data.data, data.len);
        size_t keeps[] = { stream.len - 1, stream.len / 2, 10 };
        for (size_t k = 0; k < sizeof keeps / sizeof keeps[0]; k++) {
            buf part = { stream.data, keeps[k] };
            buf with_size = kernel_payload(&part, (uint32_t)data.len);
            buf img = make_image(&with_size);
            assert_fails(&img, PK_ERR_FORMAT, cs[i].prefix);
            img = make_image(&part); /* and without the size field */
            assert_fails(&img, PK_ERR_FORMAT, cs[i].prefix);
        }
    }
}

/* lz4 legacy has no end marker: a stream cut at a block boundary decodes
 * cleanly, and only the size field reveals the missing blocks. */
Test(bzimage, lz4_cut_at_block_boundary)
{
    buf data = sample_data(300000);
    buf stream = compress_lz4_block(data.data, data.len, 65536);
    uint32_t first = (uint32_t)stream.data[4] | stream.data[5] << 8 |
                     stream.data[6] << 16 | (uint32_t)stream.data[7] << 24;
    buf part = { stream.data, 8 + first };
    buf payload = kernel_payload(&part, (uint32_t)data.len);
    buf img = make_image(&payload);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt lz4 payload: decompressed to "
                                      "65536 bytes but the size field says");
    /* with the honest size field the same blocks are a valid payload */
    payload = kernel_payload(&part, 65536);
    img = make_image(&payload);
    result r = extract(&img);
    cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
    cr_assert_eq(r.out_len, 65536);
    cr_assert(memcmp(r.out, data.data, 65536) == 0);
    free(r.out);
}

/* A second legacy magic ends the stream; what follows is not decoded, so
 * the size field (covering both) disagrees. */
Test(bzimage, lz4_magic_ends_stream)
{
    buf data = sample_data(100000);
    buf a = compress_lz4(data.data, 60000);
    buf b = compress_lz4(data.data + 60000, 40000);
    buf both = { NULL, 0 };
    buf_append(&both, a.data, a.len);
    buf_append(&both, b.data, b.len);
    buf payload = kernel_payload(&both, 100000);
    buf img = make_image(&payload);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt lz4 payload: decompressed to "
                                      "60000 bytes");
    payload = kernel_payload(&both, 60000);
    img = make_image(&payload);
    result r = extract(&img);
    cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
    cr_assert_eq(r.out_len, 60000);
    cr_assert(memcmp(r.out, data.data, 60000) == 0);
    free(r.out);
}

Test(bzimage, lz4_bad_block_sizes)
{
    buf data = sample_data(50000);
    buf stream = compress_lz4(data.data, data.len);
    buf payload = kernel_payload(&stream, (uint32_t)data.len);
    buf img = make_image(&payload);
    size_t start = 28 * 512 + 0x3A1;
    uint32_t sizes[] = { 0, 0x7FFFFFFFu, 0xFFFFFFFFu,
                         (uint32_t)LZ4_compressBound(8 << 20) + 1,
                         (uint32_t)stream.len }; /* runs past the end */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        put_le32(img.data + start + 4, sizes[i]);
        assert_fails(&img, PK_ERR_FORMAT, "corrupt lz4 payload: ");
    }
}

/* A block that expands beyond the 8 MiB legacy limit is corrupt, even when
 * the output buffer happens to have room for it. */
Test(bzimage, lz4_oversized_block)
{
    size_t len = ((size_t)8 << 20) + 1;
    uint8_t *zeros = arena_zalloc(len);
    buf small = compress_lz4_block(zeros, 1000, 1000);
    buf big = compress_lz4_block(zeros, len, len);
    buf stream = { NULL, 0 };
    buf_append(&stream, small.data, small.len);
    buf_append(&stream, big.data + 4, big.len - 4); /* no second magic */
    buf payload = kernel_payload(&stream, (uint32_t)(len + 1000));
    buf img = make_image(&payload);
    char want[80];
    snprintf(want, sizeof want, "corrupt lz4 payload: block at offset %zu ",
             small.len);
    assert_fails(&img, PK_ERR_FORMAT, want);
}

/* ---- corruption --------------------------------------------------------- */

static buf corrupted_image(compressor c, const buf *data, size_t at,
                           uint8_t fill, size_t n)
{
    buf stream = c(data->data, data->len);
    cr_assert_lt(at + n, stream.len);
    memset(stream.data + at, fill, n);
    buf payload = kernel_payload(&stream, (uint32_t)data->len);
    return make_image(&payload);
}

Test(bzimage, corrupt_gzip)
{
    buf data = sample_data(100000);
    buf img = corrupted_image(compress_gzip, &data, 3000, 0xFF, 16);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt gzip payload: ");
    img = corrupted_image(compress_gzip, &data, 2, 0x07, 1); /* method */
    assert_fails(&img, PK_ERR_FORMAT, "corrupt gzip payload: ");
}

Test(bzimage, corrupt_xz)
{
    buf data = sample_data(100000);
    buf img = corrupted_image(compress_xz, &data, 3000, 0xFF, 16);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt xz payload: ");
    img = corrupted_image(compress_xz, &data, 7, 0x55, 1); /* stream flags */
    assert_fails(&img, PK_ERR_FORMAT, "corrupt xz payload: ");
}

Test(bzimage, corrupt_zstd)
{
    buf data = sample_data(100000);
    buf img = corrupted_image(compress_zstd, &data, 3000, 0xFF, 16);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt zstd payload: ");
}

Test(bzimage, corrupt_lz4)
{
    buf data = sample_data(100000);
    /* 0xFF tokens claim literal runs longer than the block */
    buf img = corrupted_image(compress_lz4, &data, 3000, 0xFF, 64);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt lz4 payload: ");
}

/* The trailing size field disagreeing with the data is reported, whatever
 * the value, without trusting it for the allocation. */
Test(bzimage, size_field_disagrees)
{
    buf data = sample_data(100000);
    compressor cs[] = { compress_gzip, compress_xz, compress_zstd,
                        compress_lz4 };
    const char *prefixes[] = { "corrupt gzip payload: decompressed to",
                               "corrupt xz payload: decompressed to",
                               "corrupt zstd payload: decompressed to",
                               "corrupt lz4 payload: decompressed to" };
    uint32_t lies[] = { 0, 1, 99999, 100001, 0x40000001u, 0xFFFFFFFFu };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        buf stream = cs[i](data.data, data.len);
        for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
            buf payload = kernel_payload(&stream, lies[k]);
            buf img = make_image(&payload);
            assert_fails(&img, PK_ERR_FORMAT, prefixes[i]);
        }
    }
}

Test(bzimage, stray_bytes_after_stream)
{
    buf data = sample_data(1000);
    buf stream = compress_xz(data.data, data.len);
    buf payload = { NULL, 0 };
    buf_append(&payload, stream.data, stream.len);
    buf_append(&payload, "\x01\x02", 2);
    buf img = make_image(&payload);
    assert_fails(&img, PK_ERR_FORMAT, "corrupt xz payload: 2 stray bytes");
}

/* Random damage anywhere in the payload: never a crash, never a wrong
 * output reported as success (gzip, xz and zstd all carry checksums). */
Test(bzimage, random_damage_never_lies)
{
    buf data = sample_data(20000);
    compressor cs[] = { compress_gzip, compress_xz, compress_zstd,
                        compress_lz4 };
    uint32_t x = 42;
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        buf stream = cs[i](data.data, data.len);
        buf payload = kernel_payload(&stream, (uint32_t)data.len);
        buf img = make_image(&payload);
        size_t start = 28 * 512 + 0x3A1;
        for (int round = 0; round < 300; round++) {
            x = x * 1103515245u + 12345u;
            size_t at = start + (x >> 8) % payload.len;
            uint8_t old = img.data[at];
            img.data[at] ^= (uint8_t)(1u << (x % 8)) | (uint8_t)(x >> 24);
            if (img.data[at] == old)
                img.data[at] ^= 1;
            result r = extract(&img);
            cr_assert(r.st == PK_OK || r.st == PK_ERR_FORMAT ||
                      r.st == PK_ERR_UNSUPPORTED,
                      "status %d: %s", r.st, r.err.msg);
            if (r.st == PK_OK && i < 3) {
                cr_assert_eq(r.out_len, data.len);
                cr_assert(memcmp(r.out, data.data, data.len) == 0,
                          "damage at %zu went unnoticed", at - start);
            }
            if (r.st != PK_OK)
                cr_assert_null(r.out);
            free(r.out);
            img.data[at] = old;
        }
    }
}

/* ---- unknown and unsupported compressions ------------------------------ */

static void assert_unsupported(const char *magic, size_t n, const char *want)
{
    uint8_t bytes[64];
    memset(bytes, 0x41, sizeof bytes);
    memcpy(bytes, magic, n);
    buf payload = { bytes, sizeof bytes };
    buf img = make_image(&payload);
    cr_assert(pk_bzimage_detect(img.data, img.len));
    result r = extract(&img);
    cr_assert_eq(r.st, PK_ERR_UNSUPPORTED, "%s: %s", want, r.err.msg);
    cr_assert_null(r.out);
    cr_assert_not_null(strstr(r.err.msg, want), "message: %s", r.err.msg);
}

Test(bzimage, unsupported_formats_named)
{
    assert_unsupported("BZh91AY&SY", 10, "bzip2");
    assert_unsupported("\x5d\x00\x00\x80\x00", 5, "lzma");
    assert_unsupported("\x89LZO\x00\r\n", 7, "lzo");
}

Test(bzimage, unknown_compression)
{
    assert_unsupported("\x7f" "ELF", 4, "unknown bzImage payload compression");
    assert_unsupported("\x1f\x9d\x90", 3, "starts 1f 9d 90");
    /* a lz4 *frame* (not the legacy format the kernel uses) */
    assert_unsupported("\x04\x22\x4d\x18", 4, "unknown");
}

/* ---- the 1 GiB cap ------------------------------------------------------ */

Test(bzimage, zstd_output_over_1gib)
{
    /* 1 GiB + 1 zeros, streamed so the test needs no 1 GiB input buffer */
    size_t total = ((size_t)1 << 30) + 1, chunk = (size_t)1 << 20;
    uint8_t *zeros = arena_zalloc(chunk);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    size_t cap = 1 << 20;
    buf stream = { arena_realloc(NULL, cap), 0 };
    for (size_t done = 0; done < total;) {
        size_t n = total - done < chunk ? total - done : chunk;
        done += n;
        ZSTD_inBuffer ib = { zeros, n, 0 };
        ZSTD_EndDirective mode = done == total ? ZSTD_e_end : ZSTD_e_continue;
        size_t left;
        do {
            ZSTD_outBuffer ob = { stream.data, cap, stream.len };
            left = ZSTD_compressStream2(cctx, &ob, &ib, mode);
            cr_assert(!ZSTD_isError(left));
            stream.len = ob.pos;
            cr_assert_lt(stream.len, cap);
        } while (ib.pos < ib.size || (mode == ZSTD_e_end && left != 0));
    }
    ZSTD_freeCCtx(cctx);
    buf payload = kernel_payload(&stream, (uint32_t)total);
    buf img = make_image(&payload);
    assert_fails(&img, PK_ERR_FORMAT,
                 "corrupt zstd payload: decompresses to more than 1 GiB");
}

Test(bzimage, lz4_output_over_1gib)
{
    size_t block = (size_t)8 << 20;
    uint8_t *zeros = arena_zalloc(block);
    buf one = compress_lz4_block(zeros, block, block); /* magic + 1 block */
    buf stream = { NULL, 0 };
    buf_append(&stream, one.data, one.len);
    for (int i = 1; i < 129; i++) /* 129 * 8 MiB > 1 GiB */
        buf_append(&stream, one.data + 4, one.len - 4);
    buf payload = kernel_payload(&stream, 0);
    buf img = make_image(&payload);
    assert_fails(&img, PK_ERR_FORMAT,
                 "corrupt lz4 payload: decompresses to more than 1 GiB");
}

Test(bzimage, lz4_output_exactly_1gib)
{
    size_t block = (size_t)8 << 20;
    uint8_t *zeros = arena_zalloc(block);
    buf one = compress_lz4_block(zeros, block, block);
    buf stream = { NULL, 0 };
    buf_append(&stream, one.data, one.len);
    for (int i = 1; i < 128; i++)
        buf_append(&stream, one.data + 4, one.len - 4);
    buf payload = kernel_payload(&stream, 1u << 30);
    buf img = make_image(&payload);
    result r = extract(&img);
    cr_assert_eq(r.st, PK_OK, "%s", r.err.msg);
    cr_assert_eq(r.out_len, (size_t)1 << 30);
    free(r.out);
}

Test(bzimage, extract_rejects_null_outputs)
{
    buf stream = compress_gzip((const uint8_t *)"hello", 5);
    buf payload = kernel_payload(&stream, 5);
    buf img = make_image(&payload);
    size_t n;
    uint8_t *o;
    cr_assert_eq(pk_bzimage_extract(img.data, img.len, NULL, &n, NULL, NULL),
                 PK_ERR_USAGE);
    cr_assert_eq(pk_bzimage_extract(img.data, img.len, &o, NULL, NULL, NULL),
                 PK_ERR_USAGE);
    /* compression and err are optional */
    cr_assert_eq(pk_bzimage_extract(img.data, img.len, &o, &n, NULL, NULL),
                 PK_OK);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(o, "hello", 5) == 0);
    free(o);
}
