/* popek — the scanner: finds catalog instructions in an image's code.
 *
 * Two sweeps. The linear sweep decodes every executable region from start
 * to end, skipping one byte where nothing decodes; it runs on all cores,
 * each taking chunks of a region and stitching where its stream meets the
 * next chunk's (streams started at different bytes agree once they share an
 * instruction start), so its result equals a plain sequential sweep. The
 * recursive descent starts at the entry point and every function symbol and
 * follows direct branches and calls. Sites carry which sweeps found them. */
#ifndef POPEK_SCAN_H
#define POPEK_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "popek/catalog.h"
#include "popek/image.h"
#include "popek/status.h"

enum {
    PK_FOUND_LINEAR = 1 << 0,
    PK_FOUND_RECURSIVE = 1 << 1,
};

enum {
    /* Found by the linear sweep only, inside an instruction recursive
     * descent reached: the linear sweep read those bytes out of step, so
     * the site is most likely not an instruction at all. */
    PK_SITE_INSIDE_REACHED = 1 << 0,
};

/* One instruction of a catalog row found in an image. */
typedef struct pk_site {
    uint64_t vaddr;
    uint32_t region;        /* index into the image's regions */
    uint16_t cls;           /* pk_class_id */
    uint8_t len;
    uint8_t found;          /* PK_FOUND_* bits */
    uint8_t flags;          /* PK_SITE_* bits */
    uint8_t bytes[16];
} pk_site;

/* What a sweep saw in one region. */
typedef struct pk_region_stats {
    uint64_t instructions;  /* decoded by the linear sweep, padding included */
    uint64_t undecodable;   /* bytes skipped by the linear sweep */
    uint64_t padding_bytes; /* int3 (CC) bytes of alignment padding */
    uint64_t padding_runs;
    uint64_t reached;       /* instructions reached by recursive descent */
} pk_region_stats;

typedef struct pk_scan_options {
    unsigned sets;          /* PK_SET_* bits; 0 means PK_SET_PG */
    const bool *only;       /* NULL, or PK_CLASS_COUNT flags: only these rows */
    unsigned sweeps;        /* PK_FOUND_* bits; 0 means both */
    unsigned threads;       /* 0: one per online CPU */
    uint64_t chunk_size;    /* bytes per linear-sweep chunk; 0: automatic */
    /* Called now and then from the calling thread with bytes swept so far. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
    /* Also gather what decoding says of control flow (pk_scan.targets,
     * pk_scan.opaque_jumps), for the patcher. */
    bool flow;
} pk_scan_options;

typedef struct pk_scan {
    const pk_image *img;    /* the image scanned */
    pk_site *sites;         /* sorted by region, then address */
    size_t nsites;
    pk_region_stats *stats; /* one per image region */
    size_t nregions;
    /* With pk_scan_options.flow, from every instruction either sweep
     * decoded: per region, one bit per byte, set at each address code
     * names: a relative branch's target, a RIP-relative operand's address,
     * an immediate or displacement whose value is a code address. */
    uint8_t **targets;
    /* With pk_scan_options.flow: indirect jumps whose targets decoding
     * cannot know (through a register, or a table indexed by one), sorted. */
    uint64_t *opaque_jumps;
    size_t nopaque_jumps;
    /* With pk_scan_options.flow and recursive descent, per region, one bit
     * per byte: where an instruction it reached starts, and the bytes inside
     * one (past its first). */
    uint8_t **reached;
    uint8_t **inside;
} pk_scan;

/* Scans img. Errors: PK_ERR_USAGE for bad options, PK_ERR_NOMEM,
 * PK_ERR_INTERNAL when the decoder cannot be set up. */
pk_status pk_scan_image(const pk_image *img, const pk_scan_options *opts,
                        pk_scan *out, pk_error *err);

void pk_scan_free(pk_scan *scan);

/* True when some address in [lo, hi) is marked in scan->targets (a scan
 * made with pk_scan_options.flow). */
bool pk_scan_has_target(const pk_scan *scan, uint64_t lo, uint64_t hi);

/* True when an instruction decoded at addr (len bytes) is out of step with
 * what recursive descent reached: addr lies inside a reached instruction,
 * or one starts inside [addr, addr + len). (A scan made with
 * pk_scan_options.flow; false where recursive descent reached nothing.) */
bool pk_scan_out_of_step(const pk_scan *scan, uint64_t addr, unsigned len);

/* The reference linear sweep: one region, one thread, one instruction at a
 * time, no shortcuts. Fills sites (found = PK_FOUND_LINEAR) and stats; the
 * fast sweep must produce exactly the same. For tests and benchmarks. */
pk_status pk_scan_region_reference(const pk_image *img, size_t region,
                                   const pk_scan_options *opts, pk_scan *out,
                                   pk_error *err);

/* True when the INT3 run [vaddr, vaddr+len) in region r is padding that no
 * one executes: it ends on a 16-byte boundary (the linker's alignment fill)
 * or at the end of the region, or it is 16 bytes or longer. A lone INT3
 * after a jump (a straight-line-speculation stop) that happens to end on a
 * boundary counts as padding too. */
bool pk_int3_run_is_padding(const pk_region *r, uint64_t vaddr, uint64_t len);

#endif
