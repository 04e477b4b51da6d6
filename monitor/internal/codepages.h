/* popek — guest code pages: scanned before they run, patched, watched.
 *
 * Every page of guest RAM is either data (read/write, no execute) or code
 * (read/execute, no write). A page becomes code only after the monitor has
 * scanned it and patched its sites with INT3, so the guest never executes
 * bytes the monitor has not seen: executing a data page faults, and the
 * monitor scans it then. Writing a code page faults too; the page goes back
 * to data and is scanned again before it next runs. This is the write
 * protection that catches self-modifying code. */
#ifndef POPEK_INTERNAL_CODEPAGES_H
#define POPEK_INTERNAL_CODEPAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tracee.h"
#include "popek/flow.h"
#include "popek/image.h"
#include "popek/patch.h"
#include "popek/status.h"

/* The unit of protection and scanning. */
enum { PK_GUEST_PAGE = 4096 };

typedef struct pk_codepages {
    pk_tracee *tracee;
    unsigned bits;          /* how the guest's code decodes: 32 or 64 */
    unsigned sets;          /* PK_SET_* bits to patch */
    const bool *only;       /* NULL, or the rows --only names */
    bool patching;          /* false: trap-only (--no-patch), RAM stays RWX */
    uint8_t *is_code;       /* per page of RAM: 1 when scanned and executable */
    uint64_t npages;
    pk_patch *patches;      /* live patches, sorted by site */
    size_t npatches, cap;
    /* A patched file's jumps, sorted, and for each where code resuming
     * inside its bytes goes on (pk_patch_table_counterparts). */
    pk_jump *jumps;
    uint64_t (*counterparts)[PK_JUMP_MAX_LEN];
    size_t njumps;
    uint64_t vcpu_page;     /* the patched file's fast-path vcpu page, or 0 */
    pk_range *regions;      /* the image's code sections: [lo, hi) */
    size_t nregions;
    uint64_t pages_scanned, pages_released;
} pk_codepages;

/* Sets up the page states: with patching, all of RAM data; without, all of
 * it read/write/execute. */
pk_status pk_codepages_init(pk_codepages *cp, pk_tracee *t, unsigned bits, unsigned sets,
                            const bool *only, bool patching, pk_error *err);
void pk_codepages_free(pk_codepages *cp);

/* Scans the guest image's code (already in RAM) as a whole, with what its
 * symbols and sections say of control flow, patches its sites, and makes
 * the pages of its code regions code. A file `popek patch` wrote brings its
 * own table: its patches are taken as they are. */
pk_status pk_codepages_load_image(pk_codepages *cp, const pk_image *img, pk_error *err);

/* An instruction fetch faulted at addr (rip: where the guest is): scans the
 * page and makes it code. */
pk_status pk_codepages_execute(pk_codepages *cp, uint64_t addr, uint64_t rip, pk_error *err);

/* The guest (or an emulated instruction) writes [addr, addr + len): the
 * code pages among them become data again. */
pk_status pk_codepages_written(pk_codepages *cp, uint64_t addr, uint64_t len, pk_error *err);

/* Opens the code page holding addr for writing and running at once, for
 * one instruction that writes the page it lies on: opened for writes
 * alone, its own next fetch would close it again, forever. The engine
 * single-steps that instruction, then calls pk_codepages_written. */
pk_status pk_codepages_open(pk_codepages *cp, uint64_t addr, pk_error *err);

/* True when the page holding addr is code. */
bool pk_codepages_is_code(const pk_codepages *cp, uint64_t addr);

/* The patch whose INT3 is at addr: a site patched with INT3, or the INT3
 * of a jump patch's trampoline. NULL when none. */
const pk_patch *pk_codepages_patch_at(const pk_codepages *cp, uint64_t addr);

/* Where the guest goes on when it resumes at addr: addr itself, unless
 * addr lies inside the bytes a jump patch replaced (past the jump's first
 * byte), where it goes on at that instruction's counterpart in the
 * trampoline instead. */
uint64_t pk_codepages_resume_at(const pk_codepages *cp, uint64_t addr);

/* The other way: where an instruction running at addr in a trampoline
 * came from (a fault there is the original instruction's fault); addr
 * itself when it is no counterpart. */
uint64_t pk_codepages_original_of(const pk_codepages *cp, uint64_t addr);

/* Whether addr is outside every trampoline or at a point where the guest's
 * own state is whole: an instruction's counterpart, a site's INT3 or the
 * jump back. Inside a fast-path block it is not: the block has moved the
 * stack and borrowed registers. */
bool pk_codepages_between(const pk_codepages *cp, uint64_t addr);

/* Whether addr is just past an STI that a fast-path block ran, before the
 * instruction after it: where an interrupt may not enter yet (the STI
 * shadow). */
bool pk_codepages_after_sti(const pk_codepages *cp, uint64_t addr);

/* A fault at regs->rip inside a fast-path block: puts back what the block
 * changed (the stack pointer, the registers it borrowed, the flags) and
 * sets rip to the site's INT3, where the monitor emulates it (see
 * pk_fastpath_undo). False, changing nothing, when rip is in no block, or
 * at an instruction that cannot fault. */
bool pk_codepages_unwind(const pk_codepages *cp, pk_regs *regs);

/* Reads len guest bytes at addr as the guest's code was before patching
 * (INT3 bytes of live patches replaced by the originals). False when the
 * range leaves RAM. */
bool pk_codepages_read_original(const pk_codepages *cp, uint64_t addr, uint8_t *buf, size_t len);

#endif
