/* popek — patches and the patch table.
 *
 * The patch table is one format for offline and live use: `popek patch`
 * embeds it in the ELF it writes (a `.popek` section, found through a
 * PT_NOTE), and a monitor builds the same table for code it patches live.
 * It records, for each patched site, what was there and how it was
 * replaced, so a monitor can emulate the original instruction. The byte
 * layout is in docs/patch-table.md. */
#ifndef POPEK_PATCH_H
#define POPEK_PATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "popek/catalog.h"
#include "popek/status.h"

/* How a site was replaced. */
typedef enum pk_tactic {
    PK_TACTIC_INT3 = 1,          /* first byte replaced by INT3 */
    PK_TACTIC_JMP = 2,           /* a jmp rel32 to a trampoline */
    PK_TACTIC_JMP_DISPLACED = 3, /* the same, with following instructions moved */
} pk_tactic;

/* One patched site. */
typedef struct pk_patch {
    uint64_t site;          /* address of the original instruction */
    uint64_t trampoline;    /* its trampoline, 0 for PK_TACTIC_INT3 */
    uint8_t len;            /* length of the original instruction, 1..15 */
    uint8_t bytes[15];      /* the original instruction */
    pk_class_id cls;        /* its catalog row */
    pk_tactic tactic;
} pk_patch;

typedef struct pk_patch_table {
    unsigned bits;          /* 16, 32 or 64: the mode of the patched code */
    uint64_t vcpu_page;     /* where a monitor maps the vcpu page, or 0 */
    pk_patch *patches;      /* sorted by site, not overlapping */
    size_t count;
} pk_patch_table;

/* The name of a tactic ("int3", "jmp", "jmp+displaced"), or "?". */
const char *pk_tactic_name(pk_tactic tactic);

/* Serialises table into a malloc'ed buffer (*out, *len). Errors:
 * PK_ERR_USAGE when the table breaks a rule decode checks (unsorted or
 * overlapping sites, a bad length, tactic, row or trampoline), PK_ERR_NOMEM. */
pk_status pk_patch_table_encode(const pk_patch_table *table, uint8_t **out, size_t *len,
                                pk_error *err);

/* Parses a serialised table into *table (patches malloc'ed; free with
 * pk_patch_table_free). Errors: PK_ERR_FORMAT for a truncated or corrupt
 * table, PK_ERR_UNSUPPORTED for a newer format version or a catalog row
 * this popek does not know, PK_ERR_NOMEM. */
pk_status pk_patch_table_decode(const uint8_t *buf, size_t len, pk_patch_table *table,
                                pk_error *err);

void pk_patch_table_free(pk_patch_table *table);

/* True when the bytes at a site (p->len of them) are what patch p leaves
 * there: for INT3, the INT3 byte followed by the original instruction's
 * other bytes. (Jump patches are not written yet: false.) */
bool pk_patch_site_matches(const pk_patch *p, const uint8_t *at);

/* The patch whose site is addr, or NULL (binary search). */
const pk_patch *pk_patch_table_find(const pk_patch_table *table, uint64_t addr);

/* ---- patching ELF files ---------------------------------------------------- */

struct pk_image;
struct pk_scan;

/* A site the plan left out, and why. */
typedef struct pk_skip {
    uint64_t site;
    pk_class_id cls;
    const char *reason;
} pk_skip;

/* Plans an INT3 patch for every site of scan, in img's bitness. Left
 * alone: rows reported but not patched by default (PK_CLASS_OPT_IN: INT3,
 * INT1), unless named in only; and,
 * listed in *skips (malloc'ed, *nskips entries), sites inside an instruction
 * recursive descent reached. Of two overlapping sites the one recursive
 * descent reached is patched; where neither or both were reached it is an
 * error, or, with allow_skip, the second is listed in *skips. */
pk_status pk_patch_plan_int3(const struct pk_image *img, const struct pk_scan *scan,
                             const bool *only, bool allow_skip,
                             pk_patch_table *table, pk_skip **skips, size_t *nskips,
                             pk_error *err);

/* Writes img's file (an ELF image, not yet patched) with every patch of
 * table applied and the table appended as a note (see elfgrow.h), into a
 * malloc'ed buffer. */
pk_status pk_patch_write_elf(const struct pk_image *img, const pk_patch_table *table,
                             uint8_t **out, size_t *len, pk_error *err);

#endif
