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
    /* For the jump tactics, where the trampoline handles this instruction:
     * an INT3 at which a monitor emulates it and resumes at the next byte,
     * or, in a passthrough table, the instruction itself, relocated. 0 for
     * PK_TACTIC_INT3. */
    uint64_t trampoline;
    uint8_t len;            /* length of the original instruction, 1..15 */
    uint8_t bytes[15];      /* the original instruction */
    pk_class_id cls;        /* its catalog row */
    pk_tactic tactic;
} pk_patch;

/* The most bytes one jump replaces: a site of up to 4 bytes and the
 * instructions after it, the last starting before the jump's fifth byte. */
#define PK_JUMP_MAX_LEN 19

/* A jmp rel32 written over code, and what it replaced. The bytes
 * [site, site + len) hold instructions: patched sites (PK_TACTIC_JMP when
 * the site fills the range alone, else PK_TACTIC_JMP_DISPLACED for each
 * site in it) and displaced neighbours, before or after them, which run
 * relocated in the trampoline (up to one that does not fall through: what
 * follows it is dead). The jump is followed by INT3 up to site + len; the
 * trampoline ends with a jump back to site + len. */
typedef struct pk_jump {
    uint64_t site;          /* where the jmp is: the first instruction it replaces */
    uint64_t trampoline;    /* where it jumps to */
    uint16_t trampoline_len; /* bytes of trampoline code */
    uint8_t len;            /* bytes replaced: 5..PK_JUMP_MAX_LEN */
    uint8_t bytes[PK_JUMP_MAX_LEN]; /* their original contents */
} pk_jump;

enum {
    /* Trampolines run each patched instruction itself instead of entering
     * a monitor; sites that could only take INT3 were left unpatched. */
    PK_TABLE_PASSTHROUGH = 1 << 0,
    /* A kernel's exception tables reach into some jump: a fixup lies among
     * its bytes, or an instruction they name moved into a trampoline. The
     * table works only under a monitor that sends a return into a jump's
     * bytes to the instruction's counterpart in the trampoline and delivers
     * a fault there at the original address (pk_patch_table_counterparts);
     * any other reader must refuse it. */
    PK_TABLE_MAPPED = 1 << 1,
    /* The fast-path blocks are a user program's (fastpath.h): a live
     * table of popek run. */
    PK_TABLE_USER = 1 << 2,
};

typedef struct pk_patch_table {
    unsigned bits;          /* 16, 32 or 64: the mode of the patched code */
    unsigned flags;         /* PK_TABLE_* */
    uint64_t vcpu_page;     /* where a monitor maps the vcpu page, or 0 */
    pk_patch *patches;      /* sorted by site, not overlapping */
    size_t count;
    pk_jump *jumps;         /* sorted by site, not overlapping */
    size_t njumps;
} pk_patch_table;

/* The name of a tactic ("int3", "jmp", "jmp+displaced"), or "?". */
const char *pk_tactic_name(pk_tactic tactic);

/* Serialises table into a malloc'ed buffer (*out, *len). Errors:
 * PK_ERR_USAGE when the table breaks a rule decode checks (see
 * docs/patch-table.md), PK_ERR_NOMEM. */
pk_status pk_patch_table_encode(const pk_patch_table *table, uint8_t **out, size_t *len,
                                pk_error *err);

/* Parses a serialised table into *table (arrays malloc'ed; free with
 * pk_patch_table_free). Errors: PK_ERR_FORMAT for a truncated or corrupt
 * table or one that breaks a rule, PK_ERR_UNSUPPORTED for a newer format
 * version or a catalog row this popek does not know, PK_ERR_NOMEM. */
pk_status pk_patch_table_decode(const uint8_t *buf, size_t len, pk_patch_table *table,
                                pk_error *err);

void pk_patch_table_free(pk_patch_table *table);

/* The patch whose site is addr, or NULL (binary search). */
const pk_patch *pk_patch_table_find(const pk_patch_table *table, uint64_t addr);

/* The jump whose replaced bytes contain addr, or NULL (binary search). */
const pk_jump *pk_patch_table_jump_at(const pk_patch_table *table, uint64_t addr);

/* Where a table's patched code is: a pointer to the len bytes at addr, or
 * NULL when they are not all in the code. */
typedef uint8_t *(*pk_code_at)(void *ctx, uint64_t addr, size_t len);

/* Checks that the code holds what table wrote there: at each INT3 site the
 * INT3 byte and the instruction's other bytes; at each jump a jmp rel32 to
 * its trampoline (decoded with Zydis) then INT3 to its end. Int3 patches
 * are checked first, then jumps. Errors: PK_ERR_FORMAT naming the first
 * patch or jump that does not match or is not in the code (at returned
 * NULL), or when a 16-bit table has jumps. */
pk_status pk_patch_table_check_code(const pk_patch_table *table, pk_code_at at, void *ctx,
                                    pk_error *err);

/* Writes the original bytes of every patch and jump back into the code
 * (after pk_patch_table_check_code has passed). */
void pk_patch_table_restore_code(const pk_patch_table *table, pk_code_at at, void *ctx);

/* ---- planning and writing patches -------------------------------------------------- */

struct pk_image;
struct pk_scan;
struct pk_flow;

typedef enum pk_tactic_choice {
    PK_CHOOSE_AUTO,         /* a jump wherever one fits safely, else INT3 */
    PK_CHOOSE_INT3,         /* INT3 everywhere */
    PK_CHOOSE_JMP,          /* a jump everywhere; a site where none fits is an error */
} pk_tactic_choice;

/* Why a site did not take a jump. */
typedef enum pk_nojump {
    PK_NOJUMP_CHOSEN,       /* --tactic int3 */
    PK_NOJUMP_MODE,         /* 16-bit code */
    PK_NOJUMP_ALTERNATIVE,  /* replacement code a kernel copies elsewhere */
    PK_NOJUMP_PINNED,       /* bytes a kernel rewrites or looks up by address */
    PK_NOJUMP_SHORT,        /* the code ends (or stops falling through) within 5 bytes */
    PK_NOJUMP_TARGET,       /* a branch target inside the bytes the jump replaces */
    PK_NOJUMP_OPAQUE,       /* in a function with a jump to unknown targets */
    PK_NOJUMP_ENDBR,        /* it would move an ENDBR (an indirect-branch target) */
    PK_NOJUMP_TRAP,         /* it would move a trap whose address matters (INT3, INT n) */
    PK_NOJUMP_RELOCATE,     /* an instruction that cannot run elsewhere (CALL, LOOP, ...) */
    PK_NOJUMP_REACH,        /* the trampolines are beyond a rel32's reach */
    PK_NOJUMP_COUNT
} pk_nojump;

/* A short description of a reason ("a branch target inside the jump"). */
const char *pk_nojump_reason(pk_nojump why);

typedef struct pk_plan_options {
    pk_tactic_choice tactic;
    /* Trampolines run each patched instruction itself; sites that could only
     * take INT3 are left as they were (and counted). */
    bool passthrough;
    /* Where a monitor maps the vcpu page (elfgrow.h places it), or 0: the
     * trampolines of sites with a fast path (fastpath.h) emulate them in
     * place against it. Not with passthrough. */
    uint64_t vcpu_page;
    bool user;              /* the blocks are a user program's (PK_TABLE_USER) */
    /* Leave out, and list, sites that cannot be patched as asked (overlapping
     * sites; with PK_CHOOSE_JMP, sites no jump fits) instead of failing. */
    bool allow_skip;
    const bool *only;       /* NULL, or the rows named by --only (opt-in rows) */
} pk_plan_options;

/* A site the plan left out, and why. */
typedef struct pk_skip {
    uint64_t site;
    pk_class_id cls;
    const char *reason;
} pk_skip;

typedef struct pk_plan {
    pk_patch_table table;
    uint64_t code_vaddr;    /* where the trampolines go */
    uint8_t *code;          /* the trampolines (code_len bytes, malloc'ed) */
    size_t code_len;
    pk_skip *skips;         /* sites left out (malloc'ed) */
    size_t nskips;
    /* Patched sites (or, passthrough, sites left alone) that took no jump,
     * by reason. */
    size_t nojump[PK_NOJUMP_COUNT];
} pk_plan;

/* Plans a patch for every site of scan (made with pk_scan_options.flow) in
 * img, with flow (NULL for PK_CHOOSE_INT3) the rest of what is known of
 * its control flow, and trampolines laid out from code_vaddr. Left alone:
 * rows reported but not patched by default (PK_CLASS_OPT_IN: INT3, INT1),
 * unless named in only; and, listed in skips, sites inside an instruction
 * recursive descent reached. Of two overlapping sites the one recursive
 * descent reached is patched; where neither or both were reached it is an
 * error, or, with allow_skip, the second is listed in skips. */
pk_status pk_patch_plan(const struct pk_image *img, const struct pk_scan *scan,
                        const struct pk_flow *flow, uint64_t code_vaddr,
                        const pk_plan_options *opts, pk_plan *plan, pk_error *err);

void pk_plan_free(pk_plan *plan);

/* Writes img's file (an ELF image, not yet patched) with plan applied: its
 * jumps and INT3 bytes over the code, its trampolines and table in a
 * segment appended (elfgrow.h; plan->code_vaddr must be where
 * pk_elf_code_vaddr puts code), into a malloc'ed buffer. */
pk_status pk_patch_write_elf(const struct pk_image *img, const pk_plan *plan, uint8_t **out,
                             size_t *len, pk_error *err);

/* Checks a patched file, loaded as img (loading checked the bytes at every
 * site and restored the originals), against its table: each trampoline is
 * in a loaded segment of the file and holds what pk_trampoline_check
 * expects. Errors: PK_ERR_FORMAT naming the first mismatch, PK_ERR_USAGE
 * when img is not a patched file. */
pk_status pk_patch_verify(const struct pk_image *img, pk_error *err);

/* Where code that resumes inside a jump's bytes goes on, for every jump of
 * t: out[i] is pk_trampoline_check's counterparts for jump i, whose
 * trampoline code at(ctx) gives. A monitor sends a guest returning into
 * the middle of a jump (after an emulated IRET or far RET, say) there.
 * Errors: PK_ERR_FORMAT when a trampoline is missing or does not match. */
pk_status pk_patch_table_counterparts(const pk_patch_table *t, pk_code_at at, void *ctx,
                                      uint64_t (*out)[PK_JUMP_MAX_LEN], pk_error *err);

#endif
