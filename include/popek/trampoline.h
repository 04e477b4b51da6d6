/* popek — the bytes of jump patches: the jump at a site and its trampoline,
 * produced with the Zydis encoder (patcher/trampoline.c draws the layout). */
#ifndef POPEK_TRAMPOLINE_H
#define POPEK_TRAMPOLINE_H

#include <stddef.h>
#include <stdint.h>

#include "popek/patch.h"
#include "popek/status.h"

/* Emits the trampoline of patch p (at p->trampoline) into buf, or, with a
 * NULL buf, only measures it; *len gets its size. bits is 32 or 64.
 * Errors: PK_ERR_UNSUPPORTED for 16-bit code or targets out of reach. */
pk_status pk_trampoline_emit(const pk_patch *p, unsigned bits, uint8_t *buf, size_t *len,
                             pk_error *err);

/* Emits the p->len bytes that replace the site: jmp rel32 to p->trampoline,
 * then INT3. Errors: PK_ERR_UNSUPPORTED when the jump does not fit or
 * cannot reach. */
pk_status pk_site_jump_emit(const pk_patch *p, unsigned bits, uint8_t *buf, pk_error *err);

#endif
