/* popek — Linux bzImage payloads (/boot/vmlinuz-*). */
#ifndef POPEK_BZIMAGE_H
#define POPEK_BZIMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "popek/status.h"

/* True when buf starts with an x86 Linux boot sector carrying the "HdrS"
 * setup header (boot protocol 2.08 or later, which names the payload). */
bool pk_bzimage_detect(const uint8_t *buf, size_t len);

/* Decompresses the payload of the bzImage in buf (gzip, xz, zstd, lz4;
 * others are reported as unsupported) into a malloc'ed buffer the caller
 * frees. On success *compression names the format ("gzip", "xz", "zstd",
 * "lz4"). Errors: PK_ERR_FORMAT for a truncated header or corrupt payload,
 * PK_ERR_UNSUPPORTED for an unknown compression, PK_ERR_NOMEM. */
pk_status pk_bzimage_extract(const uint8_t *buf, size_t len, uint8_t **out,
                             size_t *out_len, const char **compression,
                             pk_error *err);

#endif
