/* popek — what the patcher must know of control flow before it moves an
 * instruction.
 *
 * A jump patch over a short site displaces the instructions after it into
 * a trampoline; that is safe only where control never arrives in the
 * middle of the replaced bytes. Direct branches are found by decoding (the
 * scan's target map, scan.h); this gathers the rest from the file:
 * symbols and the entry point, relocations, code addresses stored in data,
 * exception-handling landing pads, and a Linux kernel's own tables of code
 * addresses. It also knows which bytes must not move at all (a kernel
 * rewrites or reads some code at its address), what a kernel reaches only
 * through its exception table (which a monitor maps to the moved code),
 * and where functions begin and end (a function with a jump table whose
 * targets are unknown moves nothing). */
#ifndef POPEK_FLOW_H
#define POPEK_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "popek/image.h"
#include "popek/status.h"

typedef struct pk_range {
    uint64_t lo, hi;        /* [lo, hi) */
} pk_range;

typedef struct pk_flow {
    /* Addresses in code that control may reach other than by falling
     * through or by a direct branch: sorted, unique. */
    uint64_t *targets;
    size_t ntargets;
    /* Addresses a kernel resumes at only after looking up an exception
     * table (the fixups of __ex_table): it reaches them by returning from
     * the exception (IRET), never by a branch. A monitor that emulates
     * that return sends it on to a moved instruction's counterpart
     * (pk_patch_table_counterparts), so only a table that runs without a
     * monitor (passthrough) must treat them as targets. Sorted, unique;
     * an address that is also a target is in targets too. */
    uint64_t *resumes;
    size_t nresumes;
    /* Bytes something rewrites at run time (a kernel's alternatives, jump
     * labels, static calls...): no jump may cover them. Sorted by lo, not
     * overlapping. */
    pk_range *pinned;
    size_t npinned;
    /* Instructions a kernel finds by their address and reads (a BUG's UD2,
     * which handle_bug decodes at the faulting address; a load whose
     * exception entry may be EX_TYPE_ZEROPAD, whose handler decodes it):
     * they must not move. A patched site among them may still take a
     * jump: a monitor emulates it at its own address. Sorted by lo, not
     * overlapping. */
    pk_range *anchored;
    size_t nanchored;
    /* Instructions a kernel finds by their address only through a lookup
     * (the faulting instructions of __ex_table): moved into a trampoline,
     * a monitor delivers their faults at the original address, so they
     * may move in a table for a monitor, not in a passthrough one. Sorted
     * by lo, not overlapping. */
    pk_range *looked_up;
    size_t nlooked_up;
    /* Known function extents: sorted by lo, not overlapping. */
    pk_range *functions;
    size_t nfunctions;
    /* What each source gave, before duplicates are dropped (one address
     * may count under several). */
    struct {
        size_t symbols;         /* targets: symbols in code, the entry point, and
                                 * function starts from .eh_frame */
        size_t relocations;     /* targets: relocation addends and S+A values in code */
        size_t data_pointers;   /* targets: pointer-sized values that point into code */
        size_t landing_pads;    /* targets: landing pads (.gcc_except_table) and
                                 * personality routines (.eh_frame) */
        size_t kernel_tables;   /* entries used (targets, resumes, pins or anchors) of
                                 * __ex_table, __jump_table, ..., .altinstructions */
    } from;
} pk_flow;

/* Gathers img's flow facts (patcher/flow.c says from where). What cannot
 * be read pins what it covers when that is known (an unreadable LSDA pins
 * its function). Errors: PK_ERR_USAGE (no image, or one without code),
 * PK_ERR_FORMAT for what the image claims to have but cannot be read and
 * whose reach is unknown (an .eh_frame that cannot be walked, a kernel
 * table no known layout fits, a section past the end of the file),
 * PK_ERR_NOMEM. On error flow is left empty. */
pk_status pk_flow_build(const pk_image *img, pk_flow *flow, pk_error *err);

void pk_flow_free(pk_flow *flow);

/* True when some target lies in [lo, hi). */
bool pk_flow_has_target(const pk_flow *flow, uint64_t lo, uint64_t hi);

/* True when some pinned byte lies in [lo, hi). */
bool pk_flow_is_pinned(const pk_flow *flow, uint64_t lo, uint64_t hi);

/* True when some address a kernel resumes at (resumes) lies in [lo, hi). */
bool pk_flow_has_resume(const pk_flow *flow, uint64_t lo, uint64_t hi);

/* True when some anchored byte lies in [lo, hi). */
bool pk_flow_is_anchored(const pk_flow *flow, uint64_t lo, uint64_t hi);

/* True when some byte of an instruction found through a lookup
 * (looked_up) lies in [lo, hi). */
bool pk_flow_is_looked_up(const pk_flow *flow, uint64_t lo, uint64_t hi);

/* The known function containing addr, in *fn (fn may be NULL); false when
 * none is known. */
bool pk_flow_function_at(const pk_flow *flow, uint64_t addr, pk_range *fn);

#endif
