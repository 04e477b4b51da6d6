/* popek — Linux bzImage payloads (/boot/vmlinuz-*).
 *
 * A bzImage is a real-mode setup stub followed by the protected-mode
 * decompressor, which carries the compressed vmlinux as its "payload". Boot
 * protocol 2.08 and later name the payload in the setup header
 * (payload_offset, payload_length), so no searching for magic bytes is
 * needed. The kernel's build appends the uncompressed size as a little-endian
 * u32 after the compressed stream; we use it as an allocation hint and as a
 * cross-check, never as a bound we rely on for memory safety.
 *
 * Decompression uses the system libraries (zlib, liblzma, libzstd, liblz4).
 * Every decoder writes into one growing buffer capped at PK_BZ_MAX_OUT, and
 * every failure is a PK_ERR_FORMAT with a one-line reason. */
#include "popek/bzimage.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

/* Setup header offsets (Documentation/arch/x86/boot.rst). */
#define PK_BZ_SETUP_SECTS 0x1F1
#define PK_BZ_BOOT_FLAG 0x1FE
#define PK_BZ_HEADER 0x202
#define PK_BZ_VERSION 0x206
#define PK_BZ_PAYLOAD_OFFSET 0x248
#define PK_BZ_PAYLOAD_LENGTH 0x24C
#define PK_BZ_HEADER_END 0x250 /* end of the fields we read */

/* A vmlinux is tens of MiB; anything beyond this is a bomb or garbage. */
#define PK_BZ_MAX_OUT ((size_t)1 << 30)
/* The lz4 legacy format cuts its input into blocks of at most 8 MiB. */
#define PK_BZ_LZ4_BLOCK ((size_t)8 << 20)
#define PK_BZ_LZ4_MAGIC 0x184C2102u
/* zstd windows larger than the output cap cannot be legitimate. */
#define PK_BZ_ZSTD_WINDOWLOG_MAX 30
/* liblzma memory budget: the kernel's xz uses a 32 MiB dictionary at most. */
#define PK_BZ_XZ_MEMLIMIT ((uint64_t)1 << 30)

static uint16_t pk_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t pk_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The checks shared by detect() and extract(); the latter wants the reason. */
static pk_status pk_bz_check_header(const uint8_t *buf, size_t len,
                                    pk_error *err)
{
    if (!buf || len < PK_BZ_VERSION + 2)
        return pk_fail(err, PK_ERR_FORMAT,
                       "not a bzImage: %zu bytes is too short for a setup "
                       "header", len);
    if (buf[PK_BZ_BOOT_FLAG] != 0x55 || buf[PK_BZ_BOOT_FLAG + 1] != 0xAA)
        return pk_fail(err, PK_ERR_FORMAT,
                       "not a bzImage: no 0x55AA boot signature at 0x1fe");
    if (memcmp(buf + PK_BZ_HEADER, "HdrS", 4) != 0)
        return pk_fail(err, PK_ERR_FORMAT,
                       "not a bzImage: no \"HdrS\" setup header at 0x202");
    uint16_t version = pk_le16(buf + PK_BZ_VERSION);
    if (version < 0x0208)
        return pk_fail(err, PK_ERR_UNSUPPORTED,
                       "bzImage boot protocol %u.%02u predates 2.08, which "
                       "first names the payload", version >> 8, version & 0xff);
    return PK_OK;
}

bool pk_bzimage_detect(const uint8_t *buf, size_t len)
{
    return pk_bz_check_header(buf, len, NULL) == PK_OK;
}

/* The output of a decoder: grows on demand, never past the cap (+ slack so
 * that "exactly at the cap" and "over it" can be told apart). */
typedef struct pk_bz_out {
    uint8_t *data;
    size_t len;
    size_t cap;
} pk_bz_out;

static pk_status pk_bz_out_resize(pk_bz_out *o, size_t cap, pk_error *err)
{
    uint8_t *p = realloc(o->data, cap);
    if (!p)
        return pk_fail(err, PK_ERR_NOMEM,
                       "out of memory decompressing the bzImage payload "
                       "(%zu bytes)", cap);
    o->data = p;
    o->cap = cap;
    return PK_OK;
}

/* Makes room when a streaming decoder has filled the buffer. */
static pk_status pk_bz_out_grow(pk_bz_out *o, const char *fmt, pk_error *err)
{
    if (o->cap > PK_BZ_MAX_OUT)
        return pk_fail(err, PK_ERR_FORMAT,
                       "corrupt %s payload: decompresses to more than 1 GiB",
                       fmt);
    size_t cap = o->cap * 2;
    if (cap > PK_BZ_MAX_OUT + 1)
        cap = PK_BZ_MAX_OUT + 1;
    return pk_bz_out_resize(o, cap, err);
}

static pk_status pk_bz_gzip(const uint8_t *in, size_t in_len, pk_bz_out *o,
                            size_t *consumed, pk_error *err)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    /* 16 + MAX_WBITS: a gzip wrapper only, with its CRC-32 and size checked. */
    int zr = inflateInit2(&zs, 16 + MAX_WBITS);
    if (zr == Z_MEM_ERROR)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory starting zlib");
    if (zr != Z_OK)
        return pk_fail(err, PK_ERR_INTERNAL, "zlib inflateInit2 failed: %d",
                       zr);
    zs.next_in = (Bytef *)in; /* zlib's API is not const-correct */
    zs.avail_in = (uInt)in_len; /* payload_length is a u32: fits */

    pk_status st = PK_OK;
    for (;;) {
        if (o->len == o->cap && (st = pk_bz_out_grow(o, "gzip", err)) != PK_OK)
            break;
        size_t room = o->cap - o->len;
        if (room > UINT_MAX)
            room = UINT_MAX;
        zs.next_out = o->data + o->len;
        zs.avail_out = (uInt)room;
        zr = inflate(&zs, Z_NO_FLUSH);
        o->len += room - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_out == 0)
            continue; /* only the output was short: grow and go on */
        if (zr == Z_BUF_ERROR)
            st = pk_fail(err, PK_ERR_FORMAT,
                         "corrupt gzip payload: unexpected end of data");
        else if (zr == Z_MEM_ERROR)
            st = pk_fail(err, PK_ERR_NOMEM, "out of memory in zlib");
        else
            st = pk_fail(err, PK_ERR_FORMAT, "corrupt gzip payload: %s",
                         zs.msg ? zs.msg : "invalid data");
        break;
    }
    *consumed = in_len - zs.avail_in;
    inflateEnd(&zs);
    return st;
}

static const char *pk_bz_lzma_reason(lzma_ret r)
{
    switch (r) {
    case LZMA_FORMAT_ERROR: return "not an xz stream";
    case LZMA_OPTIONS_ERROR: return "unsupported xz options";
    case LZMA_DATA_ERROR: return "compressed data is corrupt";
    case LZMA_BUF_ERROR: return "unexpected end of data";
    case LZMA_MEMLIMIT_ERROR: return "needs more than 1 GiB of memory";
    case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check";
    default: return "decoder error";
    }
}

static pk_status pk_bz_xz(const uint8_t *in, size_t in_len, pk_bz_out *o,
                          size_t *consumed, pk_error *err)
{
    lzma_stream strm = LZMA_STREAM_INIT;
    /* No LZMA_CONCATENATED: the kernel's size field follows the one stream
     * and is not valid xz stream padding. */
    lzma_ret r = lzma_stream_decoder(&strm, PK_BZ_XZ_MEMLIMIT, 0);
    if (r == LZMA_MEM_ERROR)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory starting liblzma");
    if (r != LZMA_OK)
        return pk_fail(err, PK_ERR_INTERNAL,
                       "lzma_stream_decoder failed: %d", (int)r);
    strm.next_in = in;
    strm.avail_in = in_len;

    pk_status st = PK_OK;
    for (;;) {
        if (o->len == o->cap && (st = pk_bz_out_grow(o, "xz", err)) != PK_OK)
            break;
        size_t room = o->cap - o->len;
        strm.next_out = o->data + o->len;
        strm.avail_out = room;
        r = lzma_code(&strm, LZMA_FINISH);
        o->len += room - strm.avail_out;
        if (r == LZMA_STREAM_END)
            break;
        if (r == LZMA_OK)
            continue;
        if (r == LZMA_BUF_ERROR && strm.avail_out == 0)
            continue;
        if (r == LZMA_MEM_ERROR)
            st = pk_fail(err, PK_ERR_NOMEM, "out of memory in liblzma");
        else
            st = pk_fail(err, PK_ERR_FORMAT, "corrupt xz payload: %s",
                         pk_bz_lzma_reason(r));
        break;
    }
    *consumed = in_len - strm.avail_in;
    lzma_end(&strm);
    return st;
}

static pk_status pk_bz_zstd(const uint8_t *in, size_t in_len, pk_bz_out *o,
                            size_t *consumed, pk_error *err)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    if (!dctx)
        return pk_fail(err, PK_ERR_NOMEM, "out of memory starting libzstd");
    /* zstd -22 --ultra (the kernel's choice) uses a 128 MiB window, exactly
     * libzstd's default limit; allow larger ones up to the output cap. */
    size_t zr = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax,
                                       PK_BZ_ZSTD_WINDOWLOG_MAX);
    if (ZSTD_isError(zr)) {
        ZSTD_freeDCtx(dctx);
        return pk_fail(err, PK_ERR_INTERNAL, "libzstd setup failed: %s",
                       ZSTD_getErrorName(zr));
    }
    ZSTD_inBuffer ib = { in, in_len, 0 };

    pk_status st = PK_OK;
    for (;;) {
        if (o->len == o->cap && (st = pk_bz_out_grow(o, "zstd", err)) != PK_OK)
            break;
        ZSTD_outBuffer ob = { o->data, o->cap, o->len };
        zr = ZSTD_decompressStream(dctx, &ob, &ib);
        o->len = ob.pos;
        if (ZSTD_isError(zr)) {
            st = pk_fail(err, PK_ERR_FORMAT, "corrupt zstd payload: %s",
                         ZSTD_getErrorName(zr));
            break;
        }
        if (zr == 0)
            break; /* the frame is complete and fully flushed */
        if (ob.pos < ob.size && ib.pos == ib.size) {
            /* Room left and nothing more to read, yet the frame goes on. */
            st = pk_fail(err, PK_ERR_FORMAT,
                         "corrupt zstd payload: unexpected end of data");
            break;
        }
    }
    *consumed = ib.pos;
    ZSTD_freeDCtx(dctx);
    return st;
}

/* The legacy lz4 frame (lz4 -l): magic, then blocks each preceded by its LE
 * u32 compressed size. There is no end marker: the data ends, the next
 * frame's magic appears, or (in a bzImage) the 4-byte size field is all
 * that is left, which cannot be a block header since a block is not empty. */
static pk_status pk_bz_lz4(const uint8_t *in, size_t in_len, pk_bz_out *o,
                           size_t *consumed, pk_error *err)
{
    size_t pos = 4; /* past the magic, checked by the caller */
    const size_t max_block = (size_t)LZ4_compressBound((int)PK_BZ_LZ4_BLOCK);
    for (;;) {
        size_t left = in_len - pos;
        if (left == 0 || left == 4)
            break;
        if (left < 4) {
            *consumed = pos;
            return pk_fail(err, PK_ERR_FORMAT,
                           "corrupt lz4 payload: %zu stray bytes after the "
                           "last block", left);
        }
        uint32_t csize = pk_le32(in + pos);
        if (csize == PK_BZ_LZ4_MAGIC)
            break;
        if (csize == 0 || csize > max_block) {
            *consumed = pos;
            return pk_fail(err, PK_ERR_FORMAT,
                           "corrupt lz4 payload: bad block size %u at offset "
                           "%zu", csize, pos);
        }
        if (csize > left - 4) {
            *consumed = pos;
            return pk_fail(err, PK_ERR_FORMAT,
                           "corrupt lz4 payload: block at offset %zu needs %u "
                           "bytes, only %zu left (truncated?)", pos, csize,
                           left - 4);
        }
        if (o->len > PK_BZ_MAX_OUT) {
            *consumed = pos;
            return pk_fail(err, PK_ERR_FORMAT,
                           "corrupt lz4 payload: decompresses to more than "
                           "1 GiB");
        }
        if (o->cap - o->len < PK_BZ_LZ4_BLOCK) {
            size_t cap = o->cap * 2;
            if (cap > PK_BZ_MAX_OUT + PK_BZ_LZ4_BLOCK)
                cap = PK_BZ_MAX_OUT + PK_BZ_LZ4_BLOCK;
            if (cap < o->len + PK_BZ_LZ4_BLOCK)
                cap = o->len + PK_BZ_LZ4_BLOCK;
            PK_CHECK(pk_bz_out_resize(o, cap, err));
        }
        /* Capacity of one block, so an oversized block is an error too. */
        int n = LZ4_decompress_safe((const char *)in + pos + 4,
                                    (char *)o->data + o->len, (int)csize,
                                    (int)PK_BZ_LZ4_BLOCK);
        if (n < 0) {
            *consumed = pos;
            return pk_fail(err, PK_ERR_FORMAT,
                           "corrupt lz4 payload: block at offset %zu does "
                           "not decode", pos);
        }
        o->len += (size_t)n;
        pos += 4 + csize;
    }
    *consumed = pos; /* the caller checks the 1 GiB cap on the total */
    return PK_OK;
}

typedef pk_status (*pk_bz_decoder)(const uint8_t *in, size_t in_len,
                                   pk_bz_out *o, size_t *consumed,
                                   pk_error *err);

static const struct pk_bz_format {
    const char *name;
    const uint8_t magic[6];
    size_t magic_len;
    pk_bz_decoder decode; /* NULL: recognised but not supported */
} pk_bz_formats[] = {
    { "gzip", { 0x1F, 0x8B }, 2, pk_bz_gzip },
    { "xz", { 0xFD, '7', 'z', 'X', 'Z', 0x00 }, 6, pk_bz_xz },
    { "zstd", { 0x28, 0xB5, 0x2F, 0xFD }, 4, pk_bz_zstd },
    { "lz4", { 0x02, 0x21, 0x4C, 0x18 }, 4, pk_bz_lz4 },
    { "bzip2", { 'B', 'Z', 'h' }, 3, NULL },
    { "lzma", { 0x5D, 0x00, 0x00 }, 3, NULL },
    { "lzo", { 0x89, 'L', 'Z', 'O' }, 4, NULL },
};

pk_status pk_bzimage_extract(const uint8_t *buf, size_t len, uint8_t **out,
                             size_t *out_len, const char **compression,
                             pk_error *err)
{
    if (!out || !out_len)
        return pk_fail(err, PK_ERR_USAGE,
                       "pk_bzimage_extract: out and out_len are required");
    *out = NULL;
    *out_len = 0;
    if (compression)
        *compression = NULL;
    PK_CHECK(pk_bz_check_header(buf, len, err));
    if (len < PK_BZ_HEADER_END)
        return pk_fail(err, PK_ERR_FORMAT,
                       "truncated bzImage: %zu bytes, the setup header alone "
                       "needs %d", len, PK_BZ_HEADER_END);

    unsigned setup_sects = buf[PK_BZ_SETUP_SECTS];
    if (setup_sects == 0)
        setup_sects = 4; /* the boot protocol's historical default */
    uint64_t start = (uint64_t)(setup_sects + 1) * 512 +
                     pk_le32(buf + PK_BZ_PAYLOAD_OFFSET);
    uint64_t plen = pk_le32(buf + PK_BZ_PAYLOAD_LENGTH);
    if (start + plen > len)
        return pk_fail(err, PK_ERR_FORMAT,
                       "truncated bzImage: payload ends at byte %llu, file is "
                       "%zu bytes", (unsigned long long)(start + plen), len);
    if (plen < 8)
        return pk_fail(err, PK_ERR_FORMAT,
                       "bzImage payload is only %llu bytes",
                       (unsigned long long)plen);
    const uint8_t *payload = buf + start;

    const struct pk_bz_format *fmt = NULL;
    for (size_t i = 0; i < sizeof pk_bz_formats / sizeof pk_bz_formats[0]; i++)
        if (memcmp(payload, pk_bz_formats[i].magic,
                   pk_bz_formats[i].magic_len) == 0) {
            fmt = &pk_bz_formats[i];
            break;
        }
    if (!fmt)
        return pk_fail(err, PK_ERR_UNSUPPORTED,
                       "unknown bzImage payload compression (starts "
                       "%02x %02x %02x %02x)", payload[0], payload[1],
                       payload[2], payload[3]);
    if (!fmt->decode)
        return pk_fail(err, PK_ERR_UNSUPPORTED,
                       "bzImage payload is %s-compressed, which popek does "
                       "not support (gzip, xz, zstd and lz4 are)", fmt->name);

    /* The size hint only sizes the first allocation, and is bounded by what
     * this payload could plausibly expand to so a lying field stays cheap. */
    uint32_t hint = pk_le32(payload + plen - 4);
    size_t first = hint;
    if (first > PK_BZ_MAX_OUT)
        first = PK_BZ_MAX_OUT;
    if (first > plen * 64)
        first = plen * 64;
    if (first < 64 * 1024)
        first = 64 * 1024;

    pk_bz_out o = { NULL, 0, 0 };
    pk_status st = pk_bz_out_resize(&o, first, err);
    size_t consumed = 0;
    if (st == PK_OK)
        st = fmt->decode(payload, plen, &o, &consumed, err);
    if (st == PK_OK && o.len > PK_BZ_MAX_OUT)
        st = pk_fail(err, PK_ERR_FORMAT,
                     "corrupt %s payload: decompresses to more than 1 GiB",
                     fmt->name);

    /* What follows the stream should be the kernel's 4-byte size field
     * (possibly after padding); nothing at all is fine too (no field). */
    size_t trailing = plen - consumed;
    if (st == PK_OK && trailing > 0 && trailing < 4)
        st = pk_fail(err, PK_ERR_FORMAT,
                     "corrupt %s payload: %zu stray bytes after the "
                     "compressed stream", fmt->name, trailing);
    if (st == PK_OK && trailing >= 4 && hint != o.len)
        st = pk_fail(err, PK_ERR_FORMAT,
                     "corrupt %s payload: decompressed to %zu bytes but the "
                     "size field says %u", fmt->name, o.len, hint);
    if (st != PK_OK) {
        free(o.data);
        return st;
    }

    /* Give back the slack; keeping the larger block is fine if this fails. */
    uint8_t *shrunk = realloc(o.data, o.len ? o.len : 1);
    if (shrunk)
        o.data = shrunk;
    *out = o.data;
    *out_len = o.len;
    if (compression)
        *compression = fmt->name;
    return PK_OK;
}
